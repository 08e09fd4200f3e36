"""`make bench`: this server and the tutorial's Express server under the same wrk rounds, side by side.

Both servers run for the whole measurement and the rounds alternate between them (our answers, theirs, our
events, theirs, then the next round), so a drift of the machine hits both alike. A round counts only if every
response was 2xx and no socket failed; otherwise the run stops and shows the round's status counts. Without
node, or without the tutorial's folder (../shared/anchors/node-tutorial, or ANCHOR=path), this server is
measured alone. bench/README.md explains every line of the output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import func, select

from calllog.queries import CallLogReader
from calllog.schema import Database, answers, events
from edge.signatures import sign_webhook
from events import event_key

ROOT = Path(__file__).resolve().parent.parent
REQUESTS_LUA = ROOT / "bench" / "requests.lua"
DEFAULT_ANCHOR = ROOT.parent / "shared" / "anchors" / "node-tutorial"
ANCHOR_CACHE = ROOT / "bench" / ".anchor-cache"

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
# BENCH_FORWARD=1: a third side, this server with forwarding on to one local receiver (bench/receiver.py), whose
# events rate is shown beside this server's without it, and whose every stored event must reach the receiver.
FORWARD = os.environ.get("BENCH_FORWARD", "") not in ("", "0")
FORWARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DELIVERY_SECONDS = 300  # how long the receiver may take, after the rounds, to have every stored event
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
CONNECTIONS = 16
MAX_RATE = 20_000  # requests/s the request files are sized for; wrk stops with an error if a server is faster
SECRET = "bench-signature-secret-0123456789abcdef"
TOKEN = "bench-call-log-token-0123456789"
ANSWER_QUERY = {
    "to": "447700900000",
    "from_user": "Alice",
    "endpoint_type": "app",
    "region_url": "https://api-eu-1.vonage.com",
}
EXACT_LOSS_EVENTS = 2000
FIGURES = {
    "answer": "signed answers: GET /voice/answer, signed as Vonage signs (the tutorial server ignores signatures)",
    "event": "signed stored events: POST /voice/event, each distinct, ours stored before its 2xx",
}
US = "this server"
TUTORIAL = "tutorial server"
FORWARDING = "forwarding on"


class BenchFailed(Exception):
    """The run's figures are not valid: a refused round, a lost event, a server or tool that failed."""


@dataclass
class Side:
    """One server under test, with its figures of every round by figure name."""

    name: str
    url: str
    process: subprocess.Popen
    main_role: str  # what its processes other than the call-log writer are called in the CPU figures
    startup: float
    roles: dict[str, list[int]] = field(default_factory=dict)
    rounds: dict[str, list[dict]] = field(default_factory=lambda: {"answer": [], "event": []})
    figures: tuple[str, ...] = ("answer", "event")  # what it is measured on
    database_url: str = ""
    # The forwarding side: its receiver's URL, and how long its deliveries took to drain after each of its rounds.
    receiver_url: str = ""
    drains: list[float] = field(default_factory=list)

    @property
    def owner(self) -> str:
        """How a round is named in messages: "this server's" or "the tutorial server's"."""
        return f"{self.name}'s" if self.name in (US, FORWARDING) else f"the {self.name}'s"

    def find_roles(self) -> None:
        self.roles = process_roles(self.process.pid, self.main_role)

    @property
    def workers(self) -> list[int]:
        """The processes that take connections: granian's workers (not its main process, not the writer)."""
        return [pid for pid in self.roles.get("workers", []) if pid != self.process.pid]

    def median(self, figure: str, key: str) -> float:
        return statistics.median(round_[key] for round_ in self.rounds[figure])


# Processes, from /proc.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> float:
    """Seconds until `url` answers; BenchFailed, with the end of the server's log, if it exits or never does."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchFailed(f"{' '.join(process.args)} exited with {process.returncode} before answering:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    raise BenchFailed(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def process_roles(pid: int, main_role: str) -> dict[str, list[int]]:
    """A server's processes by role: the call-log writer and the background jobs (known by their command lines), and
    the rest as main_role."""
    processes = [pid, *children(pid)]
    known: dict[str, list[int]] = {"writer": [], "jobs": []}
    for candidate in processes:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{candidate}/cmdline").read_bytes()
            if b"calllog.writer" in command:
                known["writer"].append(candidate)
            elif b"outbound.process" in command:
                known["jobs"].append(candidate)
    named = {candidate for pids in known.values() for candidate in pids}
    roles = {main_role: [candidate for candidate in processes if candidate not in named]}
    roles.update({role: pids for role, pids in known.items() if pids})
    return roles


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time these processes have used so far (from /proc; a process gone counts 0)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def connections_by_process(pids: list[int], port: int) -> list[int]:
    """How many established TCP connections to `port` each of `pids` holds, in the order of `pids` (from /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            established |= established_inodes(Path(table).read_text(), port)
    counts = []
    for pid in pids:
        held = 0
        with contextlib.suppress(OSError):
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(descriptor)
                    held += target.startswith("socket:[") and target[8:-1] in established
        counts.append(held)
    return counts


def established_inodes(table: str, port: int) -> set[str]:
    """The socket inodes of a /proc/net/tcp table's established connections whose local port is `port`."""
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        # sl, local address:port (hex), remote address:port, state (01 is ESTABLISHED), ..., inode (the tenth)
        if len(fields) > 9 and fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# Requests: every one distinct, signed as Vonage signs webhooks.


def answer_request(run: str, index: int, now: float) -> tuple[str, str]:
    """One distinct answer request: its query string and its Authorization header."""
    pairs = list({**ANSWER_QUERY, "uuid": f"in-{run}-{index}", "conversation_uuid": f"CON-{run}-{index}"}.items())
    return urlencode(pairs), sign_webhook(SECRET, "GET", b"", pairs, now)


def answer_lines(run: str, count: int) -> list[str]:
    now = time.time()
    requests = (answer_request(run, index, now) for index in range(count))
    return [f"GET\t/voice/answer?{query}\t{auth}\t" for query, auth in requests]


def event_payload(run: str, index: int) -> dict:
    return {
        "from": "Alice",
        "to": "447700900000",
        "uuid": f"leg-{run}-{index}",
        "conversation_uuid": f"CON-{run}-{index // 4}",
        "status": ("started", "ringing", "answered", "completed")[index % 4],
        "direction": "outbound",
        "timestamp": f"2026-11-24T10:00:00.{index % 1000:03d}Z",
    }


def event_request(run: str, index: int, now: float) -> tuple[str, str]:
    """One distinct event: its JSON body and its Authorization header."""
    body = json.dumps(event_payload(run, index), separators=(",", ":"))
    return body, sign_webhook(SECRET, "POST", body.encode(), [], now)


def event_lines(run: str, count: int) -> list[str]:
    now = time.time()
    requests = (event_request(run, index, now) for index in range(count))
    return [f"POST\t/voice/event\t{auth}\t{body}" for body, auth in requests]


def write_requests(path: Path, lines: list[str]) -> Path:
    """The request file bench/requests.lua reads: METHOD, PATH, AUTHORIZATION, BODY, tab-separated, one a line."""
    path.write_text("\n".join(lines) + "\n")
    return path


# One wrk round, and what makes it valid.


def wrk_round(
    url: str,
    requests_file: Path,
    label: str,
    seconds: int = SECONDS,
    roles: dict | None = None,
    connections_of: list[int] | None = None,
) -> dict:
    """One wrk run replaying `requests_file` against `url`: its figures, checked by check_round.

    With `roles` ({"workers": [pid, ...], ...}) the figures also hold each role's CPU µs per request; with
    `connections_of` (process ids), how many of wrk's connections each of those processes held mid-round.
    """
    roles = roles or {}
    cpu_before = {role: cpu_seconds(pids) for role, pids in roles.items()}
    wrk = subprocess.Popen(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(REQUESTS_LUA), url],
        env={**os.environ, "BENCH_REQUESTS": str(requests_file)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    connections = None
    if connections_of:
        # Half-way through, every connection is open; the kernel decides which process accepted each. On a busy
        # machine a few may still wait in the listen queue, accepted by nobody yet: sampled again, the fullest kept.
        port = int(url.rsplit(":", 1)[1])
        with contextlib.suppress(subprocess.TimeoutExpired):
            wrk.wait(timeout=seconds / 2)
        deadline = time.monotonic() + seconds / 4
        while wrk.poll() is None:
            sample = connections_by_process(connections_of, port)
            if connections is None or sum(sample) > sum(connections):
                connections = sample
            if sum(connections) >= CONNECTIONS or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    stdout, stderr = wrk.communicate()
    if wrk.returncode != 0:
        raise BenchFailed(f"wrk failed in {label}: {(stderr.strip() or stdout.strip())[-2000:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    if connections is not None:
        figures["connections"] = connections
    check_round(figures, label)
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    for role, pids in roles.items():
        used = max(0.0, cpu_seconds(pids) - cpu_before[role])  # 0 if a process was replaced meanwhile
        figures[f"{role}_cpu_us"] = used / max(figures["requests"], 1) * 1e6
    return figures


def check_round(figures: dict, label: str) -> None:
    """BenchFailed, showing the responses by status and the socket errors, unless every response was 2xx."""
    statuses = {int(status): count for status, count in figures["statuses"].items()}
    refused = sum(count for status, count in statuses.items() if not 200 <= status < 300)
    errors = {kind: count for kind, count in figures["errors"].items() if count}
    if statuses and not refused and not errors:
        return
    by_status = ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items())) or "no response"
    socket_errors = ", ".join(f"{kind} {count:,}" for kind, count in errors.items()) or "none"
    raise BenchFailed(
        f"{label} is not valid, so no figure of this run is: {refused:,} of {sum(statuses.values()):,} responses "
        f"were not 2xx; responses by status: {by_status}; socket errors: {socket_errors}"
    )


# The two servers.


def start_this_server(
    workdir: Path, database_url: str, stack: contextlib.ExitStack, name: str = US, **settings: str
) -> Side:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "VONAGE_SIGNATURE_SECRET": SECRET,
        "CALL_LOG_TOKEN": TOKEN,
        **settings,
    }
    log = workdir / ("server.log" if name == US else "server-forwarding.log")
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    stack.callback(stop, process)
    url = f"http://127.0.0.1:{port}"
    side = Side(name, url, process, "workers", wait_for(f"{url}/", process, log), database_url=database_url)
    if name == FORWARDING:
        side.figures = ("event",)
    return side


def start_forwarding_server(workdir: Path, stack: contextlib.ExitStack) -> tuple[Side, str]:
    """This server on a database of its own, forwarding every event to a receiver of its own; and the receiver's
    URL for its counts."""
    port = free_port()
    log = workdir / "receiver.log"
    with open(log, "w") as output:
        command = [sys.executable, "-m", "bench.receiver", str(port), FORWARD_SECRET]
        receiver = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    stack.callback(stop, receiver)
    receiver_url = f"http://127.0.0.1:{port}"
    wait_for(receiver_url, receiver, log)
    database_url = f"sqlite:///{workdir / 'forwarding.db'}"
    side = start_this_server(
        workdir, database_url, stack, FORWARDING, FORWARD_URL=f"{receiver_url}/events", FORWARD_SECRET=FORWARD_SECRET
    )
    side.receiver_url = receiver_url
    return side, receiver_url


def tutorial_folder() -> Path | None:
    """The tutorial server's folder ready to run, or None (said in one line) when it cannot run here."""
    anchor = Path(os.environ.get("ANCHOR") or DEFAULT_ANCHOR).resolve()
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("bench: node is not installed, so this server is measured alone (no tutorial server)")
        return None
    if not (anchor / "server.js").is_file():
        print(f"bench: no tutorial server at {anchor} (set ANCHOR=path), so this server is measured alone")
        return None
    try:
        return cached_copy(anchor)
    except subprocess.CalledProcessError as error:
        print(f"bench: npm install failed ({error.stderr.strip()[-300:]}), so this server is measured alone")
        return None


def cached_copy(anchor: Path) -> Path:
    """The anchor's files copied under bench/.anchor-cache, with node_modules installed once and then reused."""
    ANCHOR_CACHE.mkdir(exist_ok=True)
    copy = ANCHOR_CACHE / f"{anchor.name}-{hashlib.sha256(str(anchor).encode()).hexdigest()[:8]}"
    for source in anchor.rglob("*"):
        relative = source.relative_to(anchor)
        if source.is_file() and "node_modules" not in relative.parts:
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            # copyfile, not copy2: a read-only anchor would make a cache that cannot be refreshed or installed into.
            shutil.copyfile(source, copy / relative)
    package = (copy / "package.json").read_text()
    stamp = copy / "node_modules" / ".bench-installed-package.json"
    if not stamp.is_file() or stamp.read_text() != package:
        npm = ["npm", "install", "--no-audit", "--no-fund", "--silent"]
        subprocess.run(npm, cwd=copy, check=True, capture_output=True, text=True)
        stamp.write_text(package)
    return copy


def start_tutorial_server(folder: Path, workdir: Path, stack: contextlib.ExitStack) -> Side:
    port = free_port()
    # QUIET=1 would silence its per-request logging; it is measured as the tutorial runs it.
    env = {**{name: value for name, value in os.environ.items() if name != "QUIET"}, "PORT": str(port)}
    log = workdir / "tutorial.log"
    with open(log, "w") as output:
        process = subprocess.Popen(["node", "server.js"], cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT)
    stack.callback(stop, process)
    url = f"http://127.0.0.1:{port}"
    return Side(TUTORIAL, url, process, "node", wait_for(f"{url}/voice/answer?to=447700900000", process, log))


def tool_versions(folder: Path | None) -> str:
    if folder is None:
        return ""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    express = json.loads((folder / "node_modules" / "express" / "package.json").read_text())["version"]
    return f"node {node}, Express {express}"


# The measurement.


def measure(sides: list[Side], workdir: Path) -> None:
    """A warm-up, then ROUNDS rounds alternating between the sides figure by figure, into each side's rounds.

    Both sides replay the same request file: each request reaches each server once.
    """
    warm_up = write_requests(workdir / "warm-up.tsv", answer_lines(f"warm-{time.time_ns()}", MAX_RATE))
    for side in sides:
        wrk_round(side.url, warm_up, f"{side.owner} warm-up", seconds=1)
        side.find_roles()  # after the warm-up, when every worker has started
    builders = {"answer": answer_lines, "event": event_lines}
    for round_index in range(ROUNDS):
        run = f"r{round_index}-{time.time_ns()}"
        for figure, build in builders.items():
            # Signed just before use: a signature is valid for SIGNATURE_MAX_AGE (300 s) only.
            requests_file = write_requests(workdir / f"{figure}.tsv", build(run, MAX_RATE * SECONDS))
            for side in sides:
                if figure not in side.figures:
                    continue
                label = f"{side.owner} {figure} round {round_index + 1}"
                connections_of = side.workers if side.name == US else None
                side.rounds[figure].append(
                    wrk_round(side.url, requests_file, label, roles=side.roles, connections_of=connections_of)
                )
                if side.receiver_url:
                    # Its deliveries drain before the next side's round, which they would otherwise share the cores
                    # with: the other sides are measured on a quiet machine, and the drain is timed on its own.
                    side.drains.append(delivery_check(side, side.receiver_url)["after_rounds_s"])


def exact_loss_check(base_url: str, store: CallLogReader) -> tuple[int, int]:
    """Post distinct signed events from CONNECTIONS threads; return (acknowledged, acknowledged but not stored)."""
    acknowledged: list[str] = []
    lock = threading.Lock()
    run = f"exact-{time.time_ns()}"

    def post(index: int) -> None:
        body, auth = event_request(run, index, time.time())
        request = urllib.request.Request(
            f"{base_url}/voice/event",
            data=body.encode(),
            headers={"Content-Type": "application/json", "Authorization": auth},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = 200 <= response.status < 300
        except OSError:
            ok = False
        if ok:
            with lock:
                acknowledged.append(event_key(event_payload(run, index)))

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(post, range(EXACT_LOSS_EVENTS)))
    stored = store.stored_event_keys(acknowledged)
    return len(acknowledged), len(set(acknowledged) - stored)


def count_losses(ours: Side, store: CallLogReader, stored_before: int) -> dict:
    """Events acknowledged under wrk against those stored, then the exact check; `failed` if any is missing."""
    stored = store.count_events() - stored_before
    acknowledged = sum(round_["requests"] for round_ in ours.rounds["event"])  # every response was 2xx
    # wrk stops with requests in flight: those may be stored without having been acknowledged.
    allowance = CONNECTIONS * len(ours.rounds["event"])
    exact_acknowledged, exact_lost = exact_loss_check(ours.url, store)
    lost = max(0, acknowledged - stored)
    return {
        "acknowledged": acknowledged,
        "stored": stored,
        "allowance": allowance,
        "lost": lost,
        "exact_acknowledged": exact_acknowledged,
        "exact_lost": exact_lost,
        # A refused post in the exact check is an error like a refused round's.
        "failed": bool(
            lost or exact_lost or stored - acknowledged > allowance or exact_acknowledged < EXACT_LOSS_EVENTS
        ),
    }


def delivery_check(forwarding: Side, receiver_url: str, seconds: float = DELIVERY_SECONDS) -> dict:
    """Wait until the receiver has every event the forwarding side stored (each distinct webhook-id once), or
    `seconds` pass; what it got, and how long the last deliveries took after the rounds."""
    database = Database(forwarding.database_url)
    try:
        # Every event and answer decision is forwarded (the warm-up's answers too).
        with database.connect() as connection:
            stored = sum(
                connection.execute(select(func.count()).select_from(table)).scalar_one() for table in (events, answers)
            )
    finally:
        database.close()
    started = time.monotonic()
    while True:
        with urllib.request.urlopen(f"{receiver_url}/received", timeout=10) as response:
            got = json.load(response)
        if got["received"] >= stored or time.monotonic() - started > seconds:
            break
        time.sleep(0.5)
    return {"stored": stored, **got, "after_rounds_s": time.monotonic() - started}


def peak_memory(sides: list[Side]) -> str:
    """Peak RSS (VmHWM) of each server's processes: per worker, the writer, the tutorial's node."""
    parts = []
    for side in sides:
        main_pid = side.process.pid
        workers = [pid for pid in side.roles[side.main_role] if pid != main_pid] or [main_pid]
        part = f"{side.name} {max(peak_rss_mib(pid) for pid in workers):.0f} MiB"
        if side.name in (US, FORWARDING):
            part += f" per worker ({len(workers)} workers)"
        if "writer" in side.roles:
            part += f", call-log writer {max(peak_rss_mib(pid) for pid in side.roles['writer']):.0f} MiB"
        parts.append(part)
    return "peak RSS: " + "; ".join(parts)


def inprocess_costs(workdir: Path) -> dict:
    """CPU µs per request of the request path alone (bench/inprocess.py, run in its own process)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", str(workdir)], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BenchFailed(f"the in-process measurement failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# The report.

TARGET_RATIOS = {"answer": 1.5, "event": 1.2}
TARGET_ANSWER_P99_MS = 10


def header_lines(sides: list[Side], database_url: str, versions: str) -> list[str]:
    ours = sides[0]
    workers = len(ours.roles["workers"]) - 1  # granian's main process is not a worker
    database = (
        "SQLite (WAL, synchronous=FULL), a fresh file"
        if database_url.startswith("sqlite")
        else f"{database_url.split(':')[0]} from BENCH_DATABASE_URL"
    )
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
        + (f", {versions}" if versions else ""),
        f"wrk -t1 -c{CONNECTIONS} on loopback; {ROUNDS} round{'s' if ROUNDS != 1 else ''} of {SECONDS} s per server "
        "and figure, alternating between the servers; figures are medians of the rounds",
        f"{US}: serve.py, {workers} workers and a call-log writer, answering {ours.startup:.2f} s after start; "
        f"signatures on; {database}",
    ]
    for side in sides[1:]:
        if side.name == TUTORIAL:
            lines.append(
                f"{TUTORIAL}: node server.js, answering {side.startup:.2f} s after start; "
                "both servers log every request to a file"
            )
        else:
            lines.append(
                f"{FORWARDING}: serve.py again, on a SQLite database of its own, forwarding to one local receiver, "
                f"answering {side.startup:.2f} s after start; measured on events only"
            )
    responses = sum(round_["requests"] for side in sides for rounds in side.rounds.values() for round_ in rounds)
    lines.append(f"every round valid: {responses:,} responses, all 2xx, and no socket errors")
    return lines


def figure_lines(figure: str, sides: list[Side]) -> list[str]:
    lines = [FIGURES[figure]]
    for side in sides:
        if figure not in side.figures:
            continue
        cpu = ", ".join(f"{role} {side.median(figure, f'{role}_cpu_us'):.0f}" for role in side.roles)
        lines.append(
            f"  {side.name:<16}{side.median(figure, 'rps'):>8,.0f} requests/s   "
            f"p50 {side.median(figure, 'p50_us') / 1000:6.2f} ms   p99 {side.median(figure, 'p99_us') / 1000:6.2f} ms"
            f"   CPU µs per request: {cpu}"
        )
        splits = [round_["connections"] for round_ in side.rounds[figure] if "connections" in round_]
        if splits:
            shown = ", ".join("/".join(str(count) for count in sorted(split, reverse=True)) for split in splits)
            lines.append(f"  {'':<16}its {CONNECTIONS} connections per worker, round by round: {shown}")
    return lines + ratio_lines(figure, sides)


def ratio_lines(figure: str, sides: list[Side]) -> list[str]:
    """The ratio of the medians, the spread of the rounds' ratios, and the figure's target with PASS or FAIL."""
    target = f">= {TARGET_RATIOS[figure]}x the {TUTORIAL}"
    if figure == "answer":
        target += f" and our p99 < {TARGET_ANSWER_P99_MS} ms at {CONNECTIONS} connections"
    compared = [side for side in sides if side.name in (US, TUTORIAL)]
    if len(compared) < 2:
        return [f"  {'target':<16}{target}: not measured (no {TUTORIAL})"]
    ours, theirs = compared
    ratio = ours.median(figure, "rps") / theirs.median(figure, "rps")
    per_round = [mine["rps"] / other["rps"] for mine, other in zip(ours.rounds[figure], theirs.rounds[figure])]
    met = ratio >= TARGET_RATIOS[figure]
    if figure == "answer":
        met = met and ours.median(figure, "p99_us") / 1000 < TARGET_ANSWER_P99_MS
    return [
        f"  {'ratio':<16}{ratio:.2f}x (of the medians); the rounds' ratios {min(per_round):.2f}x to "
        f"{max(per_round):.2f}x",
        f"  {'target':<16}{target}: {'PASS' if met else 'FAIL'}",
    ]


def loss_lines(losses: dict) -> list[str]:
    return [
        f"events acknowledged under wrk: {losses['acknowledged']:,}; stored: {losses['stored']:,} (up to "
        f"{losses['allowance']} more may be stored: requests in flight when wrk stops); lost: {losses['lost']:,}",
        f"exact check: {EXACT_LOSS_EVENTS:,} distinct signed events posted, {losses['exact_acknowledged']:,} "
        f"acknowledged, {losses['exact_lost']:,} of them not stored",
        f"target zero events lost: {'FAIL' if losses['failed'] else 'PASS'}",
    ]


def forwarding_lines(plain: Side, forwarding: Side, delivery: dict) -> list[str]:
    """The events rate with forwarding on beside the rate without, and whether every stored event was delivered."""
    with_it, without = forwarding.median("event", "rps"), plain.median("event", "rps")
    missing = max(0, delivery["stored"] - delivery["received"])
    failed = bool(missing or delivery["unverified"])
    return [
        f"forwarding on (FORWARD_URL to one local receiver, bench/receiver.py, verifying every signature): "
        f"{with_it:,.0f} events/s against {without:,.0f} without it ({with_it / without:.2f}x)",
        f"  delivered {delivery['received']:,} of {delivery['stored']:,} stored events and answer decisions ({delivery['requests']:,} "
        f"requests, {delivery['unverified']} not verified); each round's deliveries drained within "
        f"{max(forwarding.drains, default=0):.1f} s of its end, before the next server's round; lost {missing:,}",
        f"target zero deliveries lost: {'FAIL' if failed else 'PASS'}",
    ]


def inprocess_line(costs: dict) -> str:
    cores = os.cpu_count() or 1
    return (
        f"in one process with no HTTP server (the Flask app called directly, one thread), CPU µs per request: "
        f"cheapest route {costs['cheapest']:.0f}, answer {costs['answer']:.0f}, event {costs['event']:.0f} (the "
        f"writer's commit not counted); so whatever served it, {cores} cores could run at most "
        f"{cores * 1e6 / costs['answer']:,.0f} answers/s and {cores * 1e6 / costs['event']:,.0f} events/s of this code"
    )


# The run, top to bottom.


def main() -> int:
    if shutil.which("wrk") is None:
        raise BenchFailed("wrk is not installed; `apt-get install wrk` (make bench does this)")
    folder = tutorial_folder()
    workdir = Path(tempfile.mkdtemp(prefix="voice-bench-"))
    # BENCH_DATABASE_URL measures another database (a PostgreSQL one, say); events already in it are not counted.
    database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'calls.db'}"
    try:
        sides, losses, memory, forwarded = measure_servers(folder, workdir, database_url)
        costs = inprocess_costs(workdir)
    except BenchFailed as failure:
        raise BenchFailed(f"{failure}\n(the servers' logs are in {workdir})") from None
    finally:
        for requests_file in workdir.glob("*.tsv"):
            requests_file.unlink()
    print(
        "\n".join(
            [
                *header_lines(sides, database_url, tool_versions(folder)),
                "",
                *figure_lines("answer", sides),
                *figure_lines("event", sides),
                "",
                *loss_lines(losses),
                *forwarded,
                memory,
                inprocess_line(costs),
            ]
        )
    )
    if losses["failed"]:
        raise BenchFailed(f"acknowledged events are missing, or were refused (the servers' logs are in {workdir})")
    if forwarded and forwarded[-1].endswith("FAIL"):
        raise BenchFailed(f"stored events were not all forwarded (the servers' logs are in {workdir})")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def measure_servers(folder: Path | None, workdir: Path, database_url: str) -> tuple[list[Side], dict, str, list[str]]:
    """Both servers started (and with BENCH_FORWARD, this one again forwarding), measured in alternation, this one
    checked for lost events (and lost deliveries), then all stopped."""
    database = Database(database_url)
    store = CallLogReader(database)
    try:
        stored_before = store.count_events()
        with contextlib.ExitStack() as stack:
            sides = [start_this_server(workdir, database_url, stack)]
            if folder is not None:
                sides.append(start_tutorial_server(folder, workdir, stack))
            receiver_url = None
            if FORWARD:
                forwarding, receiver_url = start_forwarding_server(workdir, stack)
                sides.append(forwarding)
            measure(sides, workdir)
            losses = count_losses(sides[0], store, stored_before)
            forwarded = []
            if receiver_url is not None:
                forwarded = forwarding_lines(sides[0], sides[-1], delivery_check(sides[-1], receiver_url))
            return sides, losses, peak_memory(sides), forwarded
    finally:
        database.close()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailed as failure:
        print(f"bench: FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
