"""A request imports nothing: what a webhook needs is loaded when the app is built.

A module imported at request time is a file opened at request time, and a worker out of file descriptors cannot
open one: libphonenumber's region data, loaded lazily, once refused a call that way under the descriptor fault test.
This checks it in a fresh interpreter, where nothing another test did has loaded a module already.
"""

from support.servers import fresh_interpreter

# Answers that reach every part of the answer path: numbers of several regions (each region has its own data),
# national format, refused destinations, app users, an inbound call, an unreadable request, the fallback URL.
SCRIPT = """
import json, sys
from app import close_app, create_app

app = create_app({
    "DATABASE_URL": "sqlite:///" + sys.argv[1] + "/calls.db",
    "INSTANCE_PATH": sys.argv[1] + "/instance",
    "CALL_LOG_TOKEN": "imports-test-token",
    "DEFAULT_REGION": "GB",
    "CALLABLE_USERS": "Alice,Bob",
    "INBOUND_ROUTES": "447700900001=Alice",
})
client = app.test_client()
client.get("/voice/answer?from_user=Alice&to=447700900000&conversation_uuid=CON-warm&uuid=leg-warm")
before = set(sys.modules)
answers = [
    "from_user=Alice&to=14155550100", "from_user=Alice&to=4930123456", "from_user=Alice&to=81312345678",
    "from_user=Alice&to=919876543210", "from_user=Alice&to=5511987654321", "from_user=Alice&to=33612345678",
    "from_user=Alice&to=07700900123", "from_user=Alice&to=449098790000", "from_user=Alice&to=Bob",
    "from=447700900002&to=447700900001", "to=not-a-number", "", "from_user=Alice&to=%2B61412345678",
]
statuses = [client.get("/voice/answer?" + query).status_code for query in answers]
statuses.append(client.post("/voice/answer", data="{not json", content_type="application/json").status_code)
statuses.append(client.post("/voice/fallback", json={"from_user": "Alice", "to": "12025550100"}).status_code)
close_app(app)
print(json.dumps({"statuses": statuses, "imported": sorted(set(sys.modules) - before)}))
"""


def test_answer_requests_import_no_module(tmp_path):
    outcome = fresh_interpreter(SCRIPT, str(tmp_path))
    assert set(outcome["statuses"]) == {200}, outcome
    assert outcome["imported"] == [], f"modules a request imported: {outcome['imported']}"
