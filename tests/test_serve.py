"""The production runner (`make run`): starts granian on HOST/PORT, and refuses bad settings in one line."""

import json
import socket
import time
import urllib.request

import pytest
import requests

from conftest import CALL_LOG_TOKEN, call_log_reader
from support.servers import run_server, start_up_error
from vonage_helper.ncco_models import parse_ncco


@pytest.fixture
def server():
    with run_server(VONAGE_NUMBER="447700900001") as url:
        yield url


def test_production_server_answers_with_an_ncco(server):
    with urllib.request.urlopen(f"{server}/voice/answer?to=447700900000") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        ncco = json.load(response)
    talk, connect = parse_ncco(ncco)
    assert connect.endpoint[0].number == "447700900000"
    assert connect.from_ == "447700900001"


def test_production_server_accepts_events(server):
    request = urllib.request.Request(
        f"{server}/voice/event",
        data=b'{"status": "started", "uuid": "u1"}',
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 204


def test_every_process_runs_on_the_settings_serve_py_read_from_the_folder_it_was_started_in(tmp_path):
    """serve.py reads the environment and the .env of the folder it runs in, then hands what it resolved to its
    workers and its writer. The writer runs in the project's folder: when each process read its settings again,
    it stored the events in another database than the one the .env names, and the API showed none of them."""
    database = tmp_path / "from-dot-env.db"
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{database}\nCALL_LOG_TOKEN={CALL_LOG_TOKEN}\n")
    with run_server(cwd=tmp_path, unset=("DATABASE_URL", "CALL_LOG_TOKEN")) as url:
        event = {"status": "started", "uuid": "dot-env-leg", "conversation_uuid": "CON-dot-env"}
        assert requests.post(f"{url}/voice/event", json=event, timeout=10).status_code == 204
        listed = requests.get(f"{url}/api/calls", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"}, timeout=10)
        assert [call["conversation_uuid"] for call in listed.json()["calls"]] == ["CON-dot-env"]
    with call_log_reader(f"sqlite:///{database}") as reader:
        assert reader.count_events() == 1


def test_two_servers_with_two_instance_folders_keep_two_call_logs(tmp_path):
    """INSTANCE_PATH moves the default database with the rest of what a server keeps: a second server started
    beside the first with its own folder (what the port-in-use hint leads to) shows only its own calls."""
    seen = {}
    for name in ("first", "second"):
        folder = tmp_path / name
        with run_server(INSTANCE_PATH=str(folder), CALL_LOG_TOKEN=CALL_LOG_TOKEN) as url:
            event = {"status": "started", "uuid": f"{name}-leg", "conversation_uuid": f"CON-{name}"}
            assert requests.post(f"{url}/voice/event", json=event, timeout=10).status_code == 204
            listed = requests.get(f"{url}/api/calls", headers={"Authorization": f"Bearer {CALL_LOG_TOKEN}"}, timeout=10)
            seen[name] = [call["conversation_uuid"] for call in listed.json()["calls"]]
        assert (folder / "calls.db").is_file()
    assert seen == {"first": ["CON-first"], "second": ["CON-second"]}


def test_with_log_format_json_every_line_the_server_writes_is_one_json_object(tmp_path):
    """Start-up notes, granian's own lines, the workers' and the writer's records, and the stop: all JSON."""
    output = tmp_path / "serve.log"
    with run_server(output, LOG_FORMAT="json", WORKERS="2") as url:
        assert requests.get(f"{url}/voice/answer", params={"to": "447700900000"}, timeout=10).status_code == 200
        event = {"status": "started", "uuid": "json-leg", "conversation_uuid": "CON-json"}
        assert requests.post(f"{url}/voice/event", json=event, timeout=10).status_code == 204
        time.sleep(0.5)
    lines = [line for line in output.read_text().splitlines() if line.strip()]
    not_json = []
    for line in lines:
        try:
            assert isinstance(json.loads(line), dict)
        except (ValueError, AssertionError):
            not_json.append(line)
    assert not_json == [], "lines that are not one JSON object:\n" + "\n".join(not_json)
    messages = [json.loads(line)["message"] for line in lines]
    assert any(message.startswith("Vonage voice webhook server on http://127.0.0.1:") for message in messages)
    assert any(message.startswith("Started worker-") for message in messages)
    assert any(message.startswith("VOICE EVENT started") for message in messages)


def test_production_server_reads_a_body_that_arrives_in_pieces_whole(server):
    # The body is read with one call of its announced length; granian must wait for all of it.
    body = json.dumps(
        {"status": "started", "uuid": "slow-leg", "timestamp": "2026-11-24T10:00:00.000Z", "pad": "x" * 60000}
    )
    head = f"POST /voice/event HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1])), timeout=10) as connection:
        connection.sendall(head.encode())
        for start in range(0, len(body), 8000):
            connection.sendall(body[start : start + 8000].encode())
            time.sleep(0.02)  # each piece arrives on its own
        status_line = connection.recv(4096).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 204 No Content"


def test_bad_setting_stops_start_up_with_one_line(tmp_path):
    line = start_up_error(tmp_path, RINGING_TIMEOUT="500")
    assert line == "error: RINGING_TIMEOUT: 500 is outside 1-120; for example RINGING_TIMEOUT=60"


def test_port_in_use_stops_start_up_with_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = start_up_error(tmp_path, PORT=str(port))
    assert f"PORT: {port} is already in use" in line


def two_listeners_on_consecutive_ports() -> tuple[socket.socket, socket.socket]:
    """Two sockets listening on ports N and N+1, N chosen by the system (tried until N+1 is free too)."""
    for _ in range(50):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        second = socket.socket()
        try:
            second.bind(("127.0.0.1", first.getsockname()[1] + 1))
        except OSError:
            first.close()
            second.close()
            continue
        first.listen()
        second.listen()
        return first, second
    raise AssertionError("found no two free consecutive ports in 50 tries")


def test_port_in_use_suggests_a_port_that_is_free(tmp_path):
    holder, next_one = two_listeners_on_consecutive_ports()  # the obvious suggestion, the next port, is taken too
    with holder, next_one:
        port = holder.getsockname()[1]
        line = start_up_error(tmp_path, PORT=str(port))
    suggested = int(line.rsplit("PORT=", 1)[1].split()[0])
    assert suggested not in (port, port + 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))


@pytest.mark.parametrize(
    "database_url, problem",
    [
        ("sqlite://instance/calls.db", "has a host; an SQLite URL has three slashes before its path"),
        ("bogus", "is not a database URL"),
        ("mysql://user@localhost/calls", "mysql is not supported"),
        ("postgresql://user@localhost", "names no database"),
    ],
)
def test_a_malformed_database_url_stops_start_up_with_one_line(database_url, problem, tmp_path):
    line = start_up_error(tmp_path, DATABASE_URL=database_url)
    assert line.startswith("error: DATABASE_URL: ") and problem in line and "for example DATABASE_URL=" in line


@pytest.mark.parametrize("database_url", ["postgresql://user@nohost.invalid/calls", "sqlite:////proc/calls.db"])
def test_a_database_that_cannot_be_reached_or_created_stops_start_up_with_one_line(database_url, tmp_path):
    line = start_up_error(tmp_path, DATABASE_URL=database_url)
    assert line.startswith("error: DATABASE_URL: cannot prepare the ") and "for example DATABASE_URL=" in line


def test_production_server_reads_a_chunked_event(server):
    body = json.dumps({"status": "started", "uuid": "chunked-leg", "timestamp": "2026-11-24T10:00:00.000Z"}).encode()
    head = b"POST /voice/event HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1])), timeout=10) as connection:
        connection.sendall(head + chunks)
        status_line = connection.recv(4096).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 204 No Content"


def printed_at_start_up(tmp_path, **settings) -> list[str]:
    """The lines the production server prints by the time it listens."""
    output = tmp_path / "serve.log"
    with run_server(output, **settings):
        pass
    return output.read_text().splitlines()


def test_start_up_says_where_the_call_log_token_it_made_is_kept(tmp_path):
    instance = tmp_path / "instance"
    notes = printed_at_start_up(tmp_path, CALL_LOG_TOKEN="", INSTANCE_PATH=str(instance))
    token = (instance / "call_log_token").read_text().strip()
    assert any(note.endswith(f"/calls?token={token}") for note in notes), notes
    assert any(note.startswith("  metrics      http://127.0.0.1:") for note in notes), notes
    assert f"  (token kept in {instance / 'call_log_token'}; set CALL_LOG_TOKEN to choose one)" in notes


def test_start_up_names_no_token_file_when_call_log_token_is_set(tmp_path):
    instance = tmp_path / "instance"
    notes = printed_at_start_up(tmp_path, CALL_LOG_TOKEN="t" * 20, INSTANCE_PATH=str(instance))
    assert any(note.endswith("/calls?token=" + "t" * 20) for note in notes), notes
    assert not any("token kept in" in note for note in notes), notes
    assert not (instance / "call_log_token").exists()


def test_start_up_prints_no_warning_about_the_request_threads_it_chose(tmp_path):
    # granian warns about more Python threads per worker than 2 x cores + 1; serve.py chooses 16 on purpose.
    printed = printed_at_start_up(tmp_path)
    assert any("Listening at" in line for line in printed), printed
    assert not any("Python threads" in line for line in printed), printed
