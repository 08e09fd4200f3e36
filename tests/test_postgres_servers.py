"""Two production servers sharing one PostgreSQL: concurrent, interleaved, duplicated deliveries are stored once."""

import json
import random
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from conftest import call_log_reader
from support.calls import conversation_events
from support.pg import fresh_postgres_url
from support.servers import run_server

CONVERSATIONS = 30


def post(url: str, payload: dict) -> int:
    request = urllib.request.Request(
        f"{url}/voice/event", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def shared_database():
    return fresh_postgres_url()


def test_two_servers_store_every_acknowledged_event_exactly_once(shared_database):
    with (
        run_server(DATABASE_URL=shared_database, WORKERS="2") as first,
        run_server(DATABASE_URL=shared_database, WORKERS="2") as second,
    ):
        deliveries = []
        shuffle = random.Random(7).shuffle
        for index in range(CONVERSATIONS):
            # Every event reaches both servers, as a retried delivery may land on either; one call's
            # deliveries go out together, in any order, so the two servers race to update the same legs.
            call = [(server, payload) for payload in conversation_events(index) for server in (first, second)]
            shuffle(call)
            deliveries += call
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(lambda delivery: post(*delivery), deliveries))
        acknowledged = {
            json.dumps(payload, sort_keys=True) for (_, payload), status in zip(deliveries, statuses) if status == 204
        }

    assert set(statuses) == {204}
    with call_log_reader(shared_database) as reader:
        assert reader.count_events() == CONVERSATIONS * 5 == len(acknowledged)
        calls, _ = reader.list_calls(limit=CONVERSATIONS)
        details = [reader.get_call(call["conversation_uuid"]) for call in calls]
    assert len(calls) == CONVERSATIONS
    stored = set()
    for call, detail in zip(calls, details):
        index = int(call["conversation_uuid"][4:12])
        legs = {leg["direction"]: leg for leg in detail["legs"]}
        assert (legs["outbound"]["status"], legs["inbound"]["status"]) == ("completed", "completed")
        assert legs["outbound"]["duration"] == index and legs["outbound"]["from"] == "Alice"
        assert Decimal(detail["total_price"]) == Decimal(f"0.00{index:06d}")
        stored |= {json.dumps(event["payload"], sort_keys=True) for leg in detail["legs"] for event in leg["events"]}
    assert stored == acknowledged
