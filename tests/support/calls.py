"""Calls for the tests, and faults made in a call log behind the server's back."""

from sqlalchemy import text


def conversation_events(index: int) -> list[dict]:
    """A whole two-leg call shaped like the tutorial's: both legs start, the phone leg answers, both complete."""
    conversation = f"CON-{index:08d}-0000-4000-8000-000000000000"
    inbound, outbound = f"in-{index:04d}", f"out-{index:04d}"
    at = f"2026-11-24T10:{index % 60:02d}"
    return [
        {
            "from": None,
            "to": "Alice",
            "uuid": inbound,
            "conversation_uuid": conversation,
            "status": "started",
            "direction": "inbound",
            "timestamp": f"{at}:00.000Z",
        },
        {
            "from": "Alice",
            "to": "447700900000",
            "uuid": outbound,
            "conversation_uuid": conversation,
            "status": "started",
            "direction": "outbound",
            "timestamp": f"{at}:01.000Z",
        },
        {
            "from": "Alice",
            "to": "447700900000",
            "uuid": outbound,
            "conversation_uuid": conversation,
            "status": "answered",
            "direction": "outbound",
            "timestamp": f"{at}:05.000Z",
        },
        {
            "from": "Unknown",
            "to": "447700900000",
            "uuid": outbound,
            "conversation_uuid": conversation,
            "status": "completed",
            "direction": "outbound",
            "duration": str(index),
            "rate": "0.10000000",
            "price": f"0.00{index:06d}",
            "timestamp": f"{at}:40.000Z",
        },
        {
            "from": None,
            "to": "Alice",
            "uuid": inbound,
            "conversation_uuid": conversation,
            "status": "completed",
            "direction": "inbound",
            "duration": "50",
            "rate": "0.00",
            "price": "0",
            "timestamp": f"{at}:41.000Z",
        },
    ]


def move_table(call_log, table, to):
    """Rename a table behind the server's back: its writes fail as they would on a broken database."""
    with call_log.database.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {table} RENAME TO {to}"))
