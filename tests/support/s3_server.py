"""A real S3-compatible server on loopback for the recordings tests: moto's server (`python -m moto.server`) in a
process of its own, reached through a small TCP relay of ours, so a test can make the store unavailable:

    unavailable()   connections refused (and those open cut) while inside; moto keeps running, so its data is kept
    hung()          moto stopped with SIGSTOP while inside: connections are accepted and never answered; data kept
    stop(), start() moto ended, then a new one on the same port; connections are refused in between. Moto keeps
                    everything in memory, so a restart LOSES every bucket and object: use it only to test that.

The endpoint (the relay's address) stays the same throughout. Moto accepts any credentials; `aws_env()` is what a
child process needs in its environment for boto3 to reach this server.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

from support.servers import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
STARTING_AT_MOST = 60  # seconds for moto's server to answer after it is started


class S3Server:
    """Moto's S3 server behind a relay on 127.0.0.1; `endpoint` is the URL to give boto3 (endpoint_url)."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="s3-server-"))
        self.moto_port = free_port()
        self.process: subprocess.Popen | None = None
        self.relay = TcpRelay(self.moto_port)
        self.endpoint = f"http://127.0.0.1:{self.relay.port}"
        self.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def aws_env(self) -> dict[str, str]:
        """The variables that point boto3 in a child process at this server (AWS_ENDPOINT_URL_S3, read by boto3
        itself) with moto's test credentials, and keep the developer's ~/.aws files out. Merge them over an
        environment without AWS_PROFILE (boto3 refuses a profile its config file does not name)."""
        return {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def client(self, attempts: int = 1, timeout: float = 10):
        """A boto3 S3 client of this process's, to the endpoint: `attempts` tries per call (1: a failure shows at
        once), `timeout` seconds to connect and to read."""
        config = Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=config,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in `bucket`: key -> contents."""
        client = self.client()
        keys = [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])
        ]
        return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    @contextlib.contextmanager
    def unavailable(self):
        """Connections to the endpoint are refused while inside, and those open are cut; the data is kept."""
        self.relay.refuse()
        try:
            yield
        finally:
            self.relay.accept()

    @contextlib.contextmanager
    def hung(self):
        """Moto is stopped (SIGSTOP) while inside: a request is accepted and never answered (the client's read
        timeout ends it); the data is kept."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def start(self) -> None:
        """Start moto's server on its port (again, after `stop`: empty) and let connections through once it answers."""
        assert self.process is None, "already running"
        log = open(self.folder / "moto.log", "ab")  # noqa: SIM115 - the child writes to it; closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS, "MOTO_PORT": str(self.moto_port)},
        )
        self.log = log
        self._wait_until_answering()
        self.relay.accept()

    def stop(self) -> None:
        """End moto's server; connections are refused until `start`. Moto's data (all in memory) is lost."""
        self.relay.refuse()
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a SIGTERM waits while a process is stopped
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
            self.log.close()

    def close(self) -> None:
        """End moto's server and the relay, and remove the folder of moto's log."""
        self.stop()
        self.relay.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + STARTING_AT_MOST
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"moto's server exited with {self.process.returncode}: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.moto_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"moto's server did not answer in {STARTING_AT_MOST} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        return (self.folder / "moto.log").read_text(errors="replace")[-2000:]


class TcpRelay:
    """A TCP relay on 127.0.0.1 (a port of its own, kept throughout) to `target_port`, which can refuse for a while.

    `refuse` closes its listening socket, so a connection is refused as by a stopped server, and cuts those open;
    `accept` listens on the same port again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.open: set[socket.socket] = set()

    def accept(self) -> None:
        with self.lock:
            if self.listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self.listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            connections, self.open = self.open, set()
        if listener is not None:
            _close(listener)
        for connection in connections:
            _close(connection)

    def close(self) -> None:
        self.refuse()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refuse() closed the listener
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        with self.lock:
            if self.listener is None:  # refused meanwhile
                _close(client)
                _close(upstream)
                return
            self.open.update((client, upstream))
        _pump(client, upstream)
        with self.lock:
            self.open.difference_update((client, upstream))
        _close(client)
        _close(upstream)


def _pump(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes (or `refuse` closes them)."""
    peer = {one: other, other: one}
    with selectors.DefaultSelector() as selector:
        for side in peer:
            side.setblocking(True)
            selector.register(side, selectors.EVENT_READ)
        while one.fileno() != -1 and other.fileno() != -1:
            try:
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    peer[key.fileobj].sendall(data)
            except (OSError, ValueError):
                return  # a side was closed under us


def _close(side: socket.socket) -> None:
    with contextlib.suppress(OSError):
        side.shutdown(socket.SHUT_RDWR)
    side.close()
