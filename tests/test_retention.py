"""Call-log retention: whole conversations older than a cutoff removed, by `flask prune` and by the writer."""

import logging
import re
import threading
import time
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, inspect, select, text

from calllog.client import WriterClient
from calllog.retention import BackgroundPrune, Pruned, count_prunable, cutoff_before, prune, prune_step
from calllog.rows import event_row
from calllog.schema import SCHEMA_VERSION, Database, answers, conversations, events, legs
from calllog.writer import WriterThread
from config import ConfigError, settings_from
from conftest import answer_record
from events import Payload, utc_timestamp
from runtime.metrics import Metrics
from support.pg import database_url_for

DAY = 86400
NOW = time.time()
RETENTION = timedelta(days=90)
# 2 legs of 2 events each and one answer decision: what `write_call` stores for a conversation.
ONE_CALL = Pruned(conversations=1, events=4, legs=2, answers=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return database_url_for(request.param, tmp_path)


@pytest.fixture
def database(database_url):
    database = Database(database_url)
    yield database
    database.close()


class Clock:
    """A wall clock the test moves by hand: `clock.now`."""

    def __init__(self):
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def writer(tmp_path, database_url, clock):
    """The call-log writer as the app runs it in a thread, pruning what is older than 90 days by `clock`."""
    thread = WriterThread(
        database_url, str(tmp_path / "writer.sock"), Metrics(CollectorRegistry()), RETENTION, clock=clock
    )
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def remote(writer):
    client = WriterClient(writer.socket_path)
    yield client
    client.close()


def days_ago(days: float) -> str:
    return utc_timestamp(NOW - days * DAY)


def write_call(client: WriterClient, conversation: str, age: float, last_age: float | None = None) -> None:
    """A call through the writer: two legs with a started and a completed event each, and an answer decision,
    received `age` days ago; the last event and the answer decision `last_age` days ago if given."""
    last_age = age if last_age is None else last_age
    sent = [("in", "started"), ("in", "completed"), ("out", "started"), ("out", "completed")]
    for number, (leg, status) in enumerate(sent):
        payload = {"status": status, "uuid": f"{conversation}-{leg}", "conversation_uuid": conversation}
        payload["timestamp"] = f"2026-01-01T00:00:0{number}.000Z"
        received = days_ago(last_age if number == len(sent) - 1 else age)
        assert client.record_event(event_row(Payload(payload), received, True)) is True
    client.record_answer(answer_record(conversation, days_ago(last_age)))
    client.flush()


event_identity = (events.c.conversation_uuid, events.c.leg_uuid, events.c.kind)


def rows_of(database: Database) -> dict[str, set[str]]:
    """Each table's conversation_uuids (legs and events by their uuid too), to compare whole call logs."""
    with database.engine.connect() as connection:
        return {
            "conversations": set(connection.execute(select(conversations.c.conversation_uuid)).scalars()),
            "events": {"/".join(map(str, row)) for row in connection.execute(select(*event_identity))},
            "legs": {f"{c}/{u}" for c, u in connection.execute(select(legs.c.conversation_uuid, legs.c.uuid))},
            "answers": set(connection.execute(select(answers.c.conversation_uuid)).scalars()),
        }


def only(snapshot: dict[str, set[str]], conversation_ids: set[str]) -> dict[str, set[str]]:
    return {table: {row for row in rows if row.split("/")[0] in conversation_ids} for table, rows in snapshot.items()}


def test_prune_removes_exactly_the_conversations_last_active_before_the_cutoff_with_every_row(remote, database):
    for conversation in ("CON-old-1", "CON-old-2"):
        write_call(remote, conversation, 120, last_age=100)
    write_call(remote, "CON-recent", 2)
    before = rows_of(database)
    removed = prune(database, cutoff_before(RETENTION, NOW))
    assert removed == ONE_CALL + ONE_CALL
    assert rows_of(database) == only(before, {"CON-recent"})
    assert len(before["events"]) == 12 and len(before["legs"]) == 6


def test_a_conversation_that_started_long_ago_but_had_an_event_recently_is_kept(remote, database):
    write_call(remote, "CON-long", 200, last_age=1)
    before = rows_of(database)
    assert prune(database, cutoff_before(RETENTION, NOW)) == Pruned()
    assert rows_of(database) == before


def test_a_recent_answer_decision_keeps_its_conversation(remote, database):
    write_call(remote, "CON-answered-late", 150)
    remote.record_answer(answer_record("CON-answered-late", days_ago(1)))
    remote.flush()
    assert prune(database, cutoff_before(RETENTION, NOW)) == Pruned()


def test_old_rows_of_no_conversation_are_pruned_too(remote, database):
    unreadable = Payload({}, text='{"status": 1e999999}', problem="a number Python does not read")
    assert remote.record_event(event_row(unreadable, days_ago(100), False)) is True
    loose_leg = {"status": "started", "uuid": "leg-alone", "timestamp": "2026-01-01T00:00:00Z"}
    assert remote.record_event(event_row(Payload(loose_leg), days_ago(100), True)) is True
    recent = {"status": "ringing", "uuid": "leg-recent", "timestamp": "2026-01-01T00:00:00Z"}
    assert remote.record_event(event_row(Payload(recent), days_ago(1), True)) is True
    remote.record_answer(answer_record(None, days_ago(100)))
    remote.record_answer(answer_record(None, days_ago(1)))
    remote.flush()
    assert prune(database, cutoff_before(RETENTION, NOW)) == Pruned(events=2, legs=1, answers=1)
    assert rows_of(database)["legs"] == {"None/leg-recent"}
    assert rows_of(database)["events"] == {"None/leg-recent/ringing"}
    assert rows_of(database)["answers"] == {None}


def test_prune_goes_a_chunk_per_transaction_and_says_when_more_is_left(remote, database):
    for index in range(5):
        write_call(remote, f"CON-old-{index}", 100)
    cutoff = cutoff_before(RETENTION, NOW)
    assert prune_step(database, cutoff, limit=2) == (ONE_CALL + ONE_CALL, True)
    assert len(rows_of(database)["conversations"]) == 3
    assert prune(database, cutoff, limit=2) == ONE_CALL + ONE_CALL + ONE_CALL


def test_a_dry_run_counts_what_prune_removes_and_removes_nothing(remote, database):
    write_call(remote, "CON-old", 100)
    write_call(remote, "CON-recent", 1)
    stray = {"status": "started", "uuid": "leg-alone", "timestamp": "2026-01-01T00:00:00Z"}
    assert remote.record_event(event_row(Payload(stray), days_ago(100), True)) is True
    cutoff = cutoff_before(RETENTION, NOW)
    before = rows_of(database)
    counted = count_prunable(database, cutoff)
    assert rows_of(database) == before
    assert counted == ONE_CALL + Pruned(events=1, legs=1)
    assert prune(database, cutoff) == counted


# SQLite has one writer at a time: a prune and a batch never overlap there.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_conversation_a_batch_is_writing_is_skipped_without_waiting_and_kept(remote, database):
    """A batch holds its conversations' rows until it commits; a prune meanwhile leaves them be."""
    write_call(remote, "CON-busy", 100)
    write_call(remote, "CON-idle", 100)
    before = rows_of(database)
    with database.engine.connect() as batch:
        # What the committer's first statement does to a conversation receiving an event.
        touch = "UPDATE conversations SET updated_at = :now WHERE conversation_uuid = 'CON-busy'"
        batch.execute(text(touch), {"now": days_ago(0)})
        assert prune(database, cutoff_before(RETENTION, NOW)) == ONE_CALL
        batch.commit()
    assert rows_of(database) == only(before, {"CON-busy"})


def test_two_servers_pruning_one_database_at_once_share_the_work(remote, database, database_url):
    for index in range(30):
        write_call(remote, f"CON-{index:02d}", 100)
    servers = [Database(database_url), Database(database_url)]
    results, failures = [], []
    start = threading.Barrier(2)

    def prune_as(server):
        start.wait()
        try:
            results.append(prune(server, cutoff_before(RETENTION, NOW), limit=3))
        except Exception as error:
            failures.append(error)

    threads = [threading.Thread(target=prune_as, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for server in servers:
        server.close()
    assert failures == []
    assert sum(results, Pruned()) == Pruned(conversations=30, events=120, legs=60, answers=30)
    assert rows_of(database) == {"conversations": set(), "events": set(), "legs": set(), "answers": set()}


def test_the_writer_prunes_a_minute_after_start_then_every_hour(writer, remote, database, clock, caplog):
    write_call(remote, "CON-old", 100)
    write_call(remote, "CON-recent", 1)
    remote.flush()  # a batch with the clock short of the first run: nothing pruned
    assert rows_of(database)["conversations"] == {"CON-old", "CON-recent"}
    clock.now += 61
    with caplog.at_level(logging.INFO, logger="voice.retention"):
        # The first flush's batch is followed by a chunk of pruning; the second is read only after it.
        remote.flush()
        remote.flush()
    assert rows_of(database)["conversations"] == {"CON-recent"}
    (line,) = [record.getMessage() for record in caplog.records if record.name == "voice.retention"]
    assert re.fullmatch(
        r"call log pruned: removed 1 call \(4 events, 2 legs, 1 answer\) older than 90 days "
        r"\(before \d{4}-\d\d-\d\d \d\d:\d\d UTC\)",
        line,
    )
    assert writer.server.pruning.seconds_until_due() == pytest.approx(3600)


def test_background_pruning_removes_one_chunk_per_step_until_its_run_is_done(remote, database):
    for index in range(5):
        write_call(remote, f"CON-old-{index}", 100)
    clock = Clock()  # its own: the writer's clock stays short of the writer's first run
    pruning = BackgroundPrune(database, RETENTION, clock=clock, chunk=2)
    clock.now += 61
    pruning.step()  # the writer takes a step between two batches
    assert len(rows_of(database)["conversations"]) == 3
    assert pruning.seconds_until_due() == 0  # the run goes on after the next batch
    pruning.step()
    pruning.step()
    assert rows_of(database)["conversations"] == set()
    assert pruning.seconds_until_due() == pytest.approx(3600)


def test_a_failed_prune_is_logged_the_writer_keeps_committing_and_the_next_run_prunes(
    writer, remote, database, clock, caplog
):
    write_call(remote, "CON-old", 100)
    with database.engine.begin() as connection:
        answers.drop(connection)
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger="voice.retention"):
        remote.flush()
        remote.flush()
    (line,) = [record.getMessage() for record in caplog.records if record.name == "voice.retention"]
    assert line.startswith("call-log pruning failed (the ") and line.endswith("; it tries again in 3600 s")
    new = {"status": "started", "uuid": "leg-new", "conversation_uuid": "CON-new", "timestamp": "2026-01-01T00:00:00Z"}
    assert remote.record_event(event_row(Payload(new), days_ago(0), True)) is True
    assert rows_of_without_answers(database) == {"CON-old", "CON-new"}
    with database.engine.begin() as connection:
        answers.create(connection)
    clock.now += 3600
    remote.flush()
    remote.flush()
    assert rows_of(database)["conversations"] == {"CON-new"}


def rows_of_without_answers(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(connection.execute(select(conversations.c.conversation_uuid)).scalars())


@pytest.fixture
def written(app):
    """An old and a recent call, written through the app's own writer."""
    client = app.extensions["call_log"].client
    write_call(client, "CON-old", 100)
    write_call(client, "CON-recent", 1)
    return app


BEFORE = r"\(before \d{4}-\d\d-\d\d \d\d:\d\d UTC\)"


def test_flask_prune_says_how_much_it_removed(written, runner):
    result = runner.invoke(args=["prune", "--older-than", "30d"])
    assert result.exit_code == 0
    assert re.fullmatch(rf"removed 1 call \(4 events, 2 legs, 1 answer\) older than 30 days {BEFORE}\n", result.output)
    assert rows_of(written.extensions["call_log"].database)["conversations"] == {"CON-recent"}


def test_flask_prune_dry_run_says_what_it_would_remove_and_keeps_it(written, runner):
    result = runner.invoke(args=["prune", "--older-than", "2w", "--dry-run"])
    assert result.exit_code == 0
    assert re.fullmatch(
        rf"would remove 1 call \(4 events, 2 legs, 1 answer\) older than 14 days {BEFORE}\n", result.output
    )
    assert rows_of(written.extensions["call_log"].database)["conversations"] == {"CON-old", "CON-recent"}


@pytest.mark.parametrize("settings_env", [{"CALL_LOG_RETENTION": "12h"}])
def test_flask_prune_without_an_age_uses_call_log_retention(written, runner):
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0
    assert re.fullmatch(
        rf"removed 2 calls \(8 events, 4 legs, 2 answers\) older than 12 hours {BEFORE}\n", result.output
    )


def test_flask_prune_with_no_age_anywhere_says_how_to_give_one(runner):
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 2
    assert result.output == (
        "error: no age to prune: give --older-than 30d, "
        "or set CALL_LOG_RETENTION=90d (or 12h, 2w; unset keeps the call log forever)\n"
    )


@pytest.mark.parametrize("value", ["30", "30m", "0d", "ninety days"])
def test_flask_prune_refuses_a_bad_age_in_one_line_with_an_example(runner, value):
    result = runner.invoke(args=["prune", "--older-than", value])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: --older-than: '{value}' ")
    assert result.output.endswith("; for example --older-than 30d (hours, days or weeks: 12h, 30d, 2w)\n")
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("database_url", ["postgresql+psycopg://nobody@127.0.0.1:1/calls"])
def test_flask_prune_with_the_database_down_says_so_in_one_line(runner):
    result = runner.invoke(args=["prune", "--older-than", "30d"])
    assert result.exit_code == 1
    assert result.output.startswith("error: the call log is unavailable: cannot prepare the postgresql database: ")
    assert result.output.endswith("; run it again when the database is back\n") and result.output.count("\n") == 1


@pytest.mark.parametrize(
    "value, age", [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("2W", timedelta(weeks=2)), ("", None)]
)
def test_call_log_retention_takes_hours_days_or_weeks_and_empty_keeps_forever(value, age):
    assert settings_from({"CALL_LOG_RETENTION": value}).call_log_retention == age


@pytest.mark.parametrize(
    "value, why",
    [
        ("0d", "'0d' would keep nothing; the shortest is 1h"),
        ("30m", "'30m' is not an age: a whole number of hours, days or weeks (h, d or w)"),
        ("90", "'90' is not an age: a whole number of hours, days or weeks (h, d or w)"),
        ("100000d", "'100000d' is over the longest, 36500d"),
    ],
)
def test_call_log_retention_refuses_nonsense_in_one_line_with_an_example(value, why):
    with pytest.raises(ConfigError) as error:
        settings_from({"CALL_LOG_RETENTION": value})
    assert str(error.value) == (
        f"CALL_LOG_RETENTION: {why}; for example CALL_LOG_RETENTION=90d (or 12h, 2w; unset keeps the call log forever)"
    )


def test_a_version_2_database_gets_the_activity_index(database):
    database.ensure_schema()
    with database.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_conversations_updated_at"))
        connection.execute(text("UPDATE schema_version SET version = 2"))
    migrated = Database(database.url)
    migrated.ensure_schema()
    indexes = {index["name"] for index in inspect(migrated.engine).get_indexes("conversations")}
    with migrated.engine.connect() as connection:
        version = connection.execute(select(func.max(text("version"))).select_from(text("schema_version"))).scalar()
    migrated.close()
    assert "ix_conversations_updated_at" in indexes and version == SCHEMA_VERSION
