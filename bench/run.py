"""`make bench`: the production server under wrk on loopback, signatures on, a fresh database; prints the table.

Each figure is the median of ROUNDS rounds. With ANCHOR=path/to/node-tutorial the tutorial's Express server is
measured in the same run and the ratios are printed. bench/inprocess.py adds what the request path costs with no
server at all: the bound no server can lift.
"""

from __future__ import annotations

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
from pathlib import Path
from urllib.parse import urlencode

from calllog.queries import CallLogReader
from calllog.schema import Database
from events import event_key
from signatures import sign_webhook

ROOT = Path(__file__).resolve().parent.parent

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
CONNECTIONS = 16
MAX_RATE = 20_000  # requests/s the pre-signed request files are sized for
SECRET = "bench-signature-secret-0123456789abcdef"
TOKEN = "bench-call-log-token-0123456789"
ANSWER_QUERY = {
    "to": "447700900000",
    "from_user": "Alice",
    "endpoint_type": "app",
    "region_url": "https://api-eu-1.vonage.com",
}
EXACT_LOSS_EVENTS = 2000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> float:
    """Seconds until `url` answers."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"bench: the server exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"bench: {url} did not answer within {timeout} s")


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


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def answer_request(index: int, signed: bool, now: float) -> tuple[str, str]:
    """One distinct answer request: its query string and its Authorization header ("" when unsigned)."""
    pairs = list({**ANSWER_QUERY, "uuid": f"in-{index}", "conversation_uuid": f"CON-bench-{index}"}.items())
    return urlencode(pairs), sign_webhook(SECRET, "GET", b"", pairs, now) if signed else ""


def answer_lines(count: int, signed: bool) -> list[str]:
    now = time.time()
    requests = (answer_request(index, signed, now) for index in range(count))
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


def event_request(run: str, index: int, signed: bool, now: float) -> tuple[str, str]:
    """One distinct event: its JSON body and its Authorization header ("" when unsigned)."""
    body = json.dumps(event_payload(run, index), separators=(",", ":"))
    return body, sign_webhook(SECRET, "POST", body.encode(), [], now) if signed else ""


def event_lines(run: str, count: int, signed: bool) -> list[str]:
    now = time.time()
    requests = (event_request(run, index, signed, now) for index in range(count))
    return [f"POST\t/voice/event\t{auth}\t{body}" for body, auth in requests]


def wrk(base_url: str, lines: list[str], workdir: Path, seconds: int = SECONDS, roles: dict | None = None) -> dict:
    """One wrk run's figures; with `roles` ({"workers": [pid, ...], ...}) also each role's CPU µs per request."""
    roles = roles or {}
    requests_file = workdir / "requests.tsv"
    requests_file.write_text("\n".join(lines) + "\n")
    cpu_before = {role: cpu_seconds(pids) for role, pids in roles.items()}
    result = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(ROOT / "bench" / "requests.lua"), base_url],
        env={**os.environ, "BENCH_REQUESTS": str(requests_file)},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: wrk failed: {result.stderr.strip() or result.stdout.strip()}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    for role, pids in roles.items():
        used = max(0.0, cpu_seconds(pids) - cpu_before[role])  # 0 if a process was replaced meanwhile
        figures[f"{role}_cpu_us"] = used / max(figures["requests"], 1) * 1e6
    return figures


def exact_loss_check(base_url: str, store: CallLogReader) -> tuple[int, int]:
    """Post distinct signed events from CONNECTIONS threads; return (acknowledged, acknowledged but not stored)."""
    acknowledged: list[str] = []
    lock = threading.Lock()

    def post(index: int) -> None:
        body, auth = event_request("exact", index, True, time.time())
        request = urllib.request.Request(
            f"{base_url}/voice/event",
            data=body.encode(),
            headers={"Content-Type": "application/json", "Authorization": auth},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = response.status == 204
        except OSError:
            ok = False
        if ok:
            with lock:
                acknowledged.append(event_key(event_payload("exact", index)))

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(post, range(EXACT_LOSS_EVENTS)))
    stored = store.stored_event_keys(acknowledged)
    return len(acknowledged), len(set(acknowledged) - stored)


def median(rounds: list[dict], key: str) -> float:
    return statistics.median(round_[key] for round_ in rounds)


def measure(base_url: str, workdir: Path, signed: bool, cheapest: str | None, roles: dict) -> dict:
    count = MAX_RATE * SECONDS
    figures: dict[str, list[dict]] = {"cheapest": [], "answer": [], "event": []}
    wrk(base_url, answer_lines(MAX_RATE, signed), workdir, seconds=1)  # warm up
    for round_index in range(ROUNDS):
        if cheapest:
            figures["cheapest"].append(wrk(base_url, [f"GET\t{cheapest}\t\t"] * count, workdir, roles=roles))
        figures["answer"].append(wrk(base_url, answer_lines(count, signed), workdir, roles=roles))
        run = f"r{round_index}-{time.time_ns()}"
        figures["event"].append(wrk(base_url, event_lines(run, count, signed), workdir, roles=roles))
    return figures


def server_roles(server_pid: int) -> dict[str, list[int]]:
    """The server's processes by role: granian's workers (with granian's main process) and the call-log writer."""
    processes = children(server_pid)
    writers = [pid for pid in processes if b"calllog.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return {"workers": [server_pid, *(pid for pid in processes if pid not in writers)], "writer": writers}


def cpu_summary(figures: dict, roles: list[str]) -> str:
    """Median CPU µs per request of each role, per figure: 'answer: workers 180, writer 16'."""
    parts = []
    for name in ("cheapest", "answer", "event"):
        if figures[name]:
            shares = ", ".join(f"{role} {median(figures[name], f'{role}_cpu_us'):.0f}" for role in roles)
            parts.append(f"{name}: {shares}")
    return "; ".join(parts)


def inprocess_costs(workdir: Path) -> dict:
    """CPU µs per request of the request path alone (bench/inprocess.py, run in its own process)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", str(workdir)], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: the in-process measurement failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_node_anchor(anchor: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    copy = workdir / "anchor"
    shutil.copytree(anchor, copy, ignore=shutil.ignore_patterns("node_modules"))
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=copy, check=True, capture_output=True)
    port = free_port()
    # Like this server, the tutorial's logs every request: both write their logs to a file.
    with open(workdir / "anchor.log", "w") as log:
        process = subprocess.Popen(
            ["node", "server.js"], cwd=copy, env={**os.environ, "PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    wait_for(f"{base_url}/voice/answer?to=447700900000", process)
    return process, base_url


def main() -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed; `apt-get install wrk` (make bench does this)")
    workdir = Path(tempfile.mkdtemp(prefix="voice-bench-"))
    # BENCH_DATABASE_URL measures another database (a PostgreSQL one, say); events already in it are not counted.
    database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'calls.db'}"
    store = CallLogReader(Database(database_url))
    stored_before = store.count_events()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "VONAGE_SIGNATURE_SECRET": SECRET,
        "CALL_LOG_TOKEN": TOKEN,
    }
    with open(workdir / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        startup = wait_for(f"{base_url}/", server)
        roles = server_roles(server.pid)
        figures = measure(base_url, workdir, signed=True, cheapest="/", roles=roles)
        stored = store.count_events() - stored_before
        acknowledged = sum(r["requests"] - r["non_2xx"] for r in figures["event"])
        exact_acknowledged, exact_lost = exact_loss_check(base_url, store)
        workers = [pid for pid in roles["workers"] if pid != server.pid]
        rss = max((peak_rss_mib(pid) for pid in workers), default=0.0)
        writer_rss = max((peak_rss_mib(pid) for pid in roles["writer"]), default=0.0)
    finally:
        server.terminate()
        server.wait(timeout=20)

    python_costs = inprocess_costs(workdir)
    anchor_figures = None
    if os.environ.get("ANCHOR"):
        anchor, anchor_url = start_node_anchor(Path(os.environ["ANCHOR"]).resolve(), workdir)
        try:
            anchor_figures = measure(anchor_url, workdir, signed=False, cheapest=None, roles={"node": [anchor.pid]})
        finally:
            anchor.terminate()

    cheapest_rps = median(figures["cheapest"], "rps")
    # wrk stops with requests in flight: those may be stored without having been acknowledged.
    in_flight_allowance = CONNECTIONS * ROUNDS
    lost = max(0, acknowledged - stored)
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"wrk -t1 -c{CONNECTIONS}, {ROUNDS} rounds of {SECONDS} s, medians; signatures on; "
        + ("SQLite (WAL, synchronous=FULL)" if database_url.startswith("sqlite") else database_url.split(":")[0]),
        "",
        "| figure | requests/s | p50 ms | p99 ms | vs cheapest route |"
        + (" vs tutorial server |" if anchor_figures else ""),
        "|---|---|---|---|---|" + ("---|" if anchor_figures else ""),
    ]
    for name, label in (
        ("cheapest", "cheapest route (GET /)"),
        ("answer", "/voice/answer, signed GET"),
        ("event", "/voice/event, signed POST, stored"),
    ):
        rps = median(figures[name], "rps")
        row = (
            f"| {label} | {rps:,.0f} | {median(figures[name], 'p50_us') / 1000:.2f} | "
            f"{median(figures[name], 'p99_us') / 1000:.2f} | {rps / cheapest_rps:.2f} |"
        )
        if anchor_figures:
            row += f" {rps / median(anchor_figures[name], 'rps'):.2f}x |" if anchor_figures[name] else " |"
        lines.append(row)
    if anchor_figures:
        lines.append(
            f"| tutorial server: answer / event | {median(anchor_figures['answer'], 'rps'):,.0f} / "
            f"{median(anchor_figures['event'], 'rps'):,.0f} | | | | |"
        )
    lines += [
        "",
        f"- start-up: {startup:.2f} s to the first answer; peak RSS per worker: {rss:.0f} MiB ({len(workers)} workers), "
        f"call-log writer: {writer_rss:.0f} MiB",
        f"- events acknowledged under wrk: {acknowledged:,}; stored: {stored:,} "
        f"(up to {in_flight_allowance} more may be stored: requests in flight when wrk stops); lost: {lost}",
        f"- exact check: {exact_acknowledged:,} distinct signed events acknowledged, {exact_lost} of them not stored",
        f"- CPU µs per request (from /proc, medians): {cpu_summary(figures, ['workers', 'writer'])}"
        + (
            f"; tutorial server: answer {median(anchor_figures['answer'], 'node_cpu_us'):.0f}, "
            f"event {median(anchor_figures['event'], 'node_cpu_us'):.0f}"
            if anchor_figures
            else ""
        ),
    ]
    cores = os.cpu_count() or 1
    lines.append(
        f"- in one process with no HTTP server (the Flask app called directly, one thread), CPU µs per request: "
        f"cheapest {python_costs['cheapest']:.0f}, answer {python_costs['answer']:.0f}, event "
        f"{python_costs['event']:.0f} (the writer's commit not counted); so whatever served it, {cores} cores could "
        f"run at most {cores * 1e6 / python_costs['answer']:,.0f} answers/s and "
        f"{cores * 1e6 / python_costs['event']:,.0f} events/s of this code"
    )
    print("\n".join(lines))
    failed = lost or exact_lost or stored - acknowledged > in_flight_allowance
    if failed:
        print("bench: FAILED: acknowledged events are missing from the database", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
