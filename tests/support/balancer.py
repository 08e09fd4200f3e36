"""A throwaway nginx load balancer for the tests: round robin over some servers, everything in one folder.

nginx runs as a child process in the foreground (daemon off) with a configuration written into the given
folder, where its pid file, logs and temporary files live too, so it touches nothing of the machine's own
nginx. If nginx is not installed the test is skipped (a failure in CI), as for PostgreSQL in tests/pg.py.
"""

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from support.needs import unavailable
from support.servers import free_port, wait_until_listening

DEBIAN_NGINX = "/usr/sbin/nginx"
# Under granian's time for a request's headers (serve.HEADER_SECONDS), so that nginx never reuses a kept-open
# connection to a server at the moment the server gives up waiting on it and closes it (a 502 for a POST).
UPSTREAM_IDLE_SECONDS = 2
TEMP_FOLDERS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str:
    """Where nginx is installed, or a skip (a failure in CI) saying how to install it."""
    found = shutil.which("nginx") or (DEBIAN_NGINX if os.access(DEBIAN_NGINX, os.X_OK) else None)
    if found:
        return found
    message = (
        "the load-balancer tests need nginx; run `bash .ci/run` (it installs Debian's nginx), "
        "or `apt-get install nginx`"
    )
    unavailable(message)


def _user_line() -> str:
    """Started as root, nginx's workers would switch to a user of the build's choosing (nobody or www-data),
    who may not enter the test's folder; they stay root instead. Anyone else: nginx cannot switch users."""
    return "user root;" if os.geteuid() == 0 else ""


def balancer_config(folder: Path, port: int, servers: list[str]) -> str:
    """nginx.conf for a round-robin balancer on 127.0.0.1:`port` over `servers` (base URLs http://host:port)."""
    upstreams = "\n".join(f"        server {url.removeprefix('http://')};" for url in servers)
    temp_paths = "\n".join(f"    {name}_temp_path {folder / name};" for name in TEMP_FOLDERS)
    return f"""{_user_line()}
daemon off;
master_process on;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} notice;
events {{
    worker_connections 1024;
}}
http {{
    access_log {folder / "access.log"};
{temp_paths}
    upstream servers {{
{upstreams}
        keepalive 32;
        keepalive_timeout {UPSTREAM_IDLE_SECONDS}s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://servers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # Which server answered: a test can see that the balancer spreads requests over them all.
            add_header X-Served-By $upstream_addr always;
        }}
    }}
}}
"""


@contextlib.contextmanager
def run_balancer(folder: Path, servers: list[str]):
    """nginx balancing over `servers`, configured and kept in `folder`; yields its base URL."""
    binary = nginx_binary()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(balancer_config(folder, port, servers))
    command = [binary, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(config)]
    with open(folder / "output.log", "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        try:
            wait_until_listening(port, process, seconds=10)
        except AssertionError as error:
            raise AssertionError(f"nginx did not start ({error}): {balancer_log(folder)}") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def balancer_log(folder: Path) -> str:
    """What nginx said: its own output and its error log."""
    parts = [folder / "output.log", folder / "error.log"]
    return "\n".join(path.read_text(errors="replace") for path in parts if path.exists())


def _stop(process: subprocess.Popen) -> None:
    """Stop nginx quickly (SIGTERM: its master stops its workers), killing it if it does not."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
