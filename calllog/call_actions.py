"""The call log's side of acting on live calls (CALL_CONTROL): which legs are in progress, where each is served
(its answer's region_url), and every action asked of Vonage, kept in the call's timeline.

Written from the thread that acted (the API route's, or `flask hangup`'s), one small transaction an action, not
through the call-log writer: an action is rare beside webhooks, and waits for Vonage anyway.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select, update

from calllog.rows import column_text, fit
from calllog.schema import Database, answers, call_actions, conversations, legs
from events import IN_PROGRESS

# What became of an action: Vonage took it; Vonage said no (its reason kept); it was refused here before any
# request (a leg that ended, a destination the policy refuses, a region_url not trusted); Vonage could not be
# reached; Vonage said 429 and it is being tried again.
ACCEPTED, REFUSED, NOT_SENT, UNREACHABLE, THROTTLED = "accepted", "refused", "not sent", "unreachable", "throttled"
ACTION_OUTCOMES = (ACCEPTED, REFUSED, NOT_SENT, UNREACHABLE, THROTTLED)
COMMAND_LINE = "command line"  # who asked, for an action from `flask hangup` and the others


class LiveLeg(NamedTuple):
    """One leg as the call log knows it, with the Voice API host its call's answer named (or None)."""

    uuid: str
    conversation_uuid: str | None
    direction: str | None
    from_number: str | None
    to_number: str | None
    status: str | None
    since: str | None  # the leg's start_time, else its answer_time
    region_url: str | None

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS


def _live_leg(row, region_url: str | None) -> LiveLeg:
    return LiveLeg(
        row.uuid,
        row.conversation_uuid,
        row.direction,
        row.from_number,
        row.to_number,
        row.status,
        row.start_time or row.answer_time,
        region_url,
    )


def _region_url(connection, conversation_uuid: str | None) -> str | None:
    """The newest region_url an answer of this conversation was given, or None."""
    if conversation_uuid is None:
        return None
    query = (
        select(answers.c.region_url)
        .where(answers.c.conversation_uuid == conversation_uuid, answers.c.region_url.is_not(None))
        .order_by(answers.c.id.desc())
        .limit(1)
    )
    return connection.execute(query).scalar()


def find_leg(database: Database, leg_uuid: str) -> LiveLeg | None:
    """The leg `leg_uuid` and its call's region_url, or None when the call log has no such leg."""
    with database.connect() as connection:
        # Text from a URL or a terminal may hold what no column does (a NUL, which PostgreSQL refuses).
        row = connection.execute(select(legs).where(legs.c.uuid == column_text(leg_uuid))).first()
        if row is None:
            return None
        return _live_leg(row, _region_url(connection, row.conversation_uuid))


def live_legs(database: Database) -> list[LiveLeg]:
    """Every leg in progress, the newest first (`flask live`)."""
    with database.connect() as connection:
        query = select(legs).where(legs.c.status.in_(sorted(IN_PROGRESS))).order_by(legs.c.start_time.desc())
        rows = connection.execute(query).all()
        return [_live_leg(row, _region_url(connection, row.conversation_uuid)) for row in rows]


def action_row(
    leg: LiveLeg | None,
    leg_uuid: str,
    action: str,
    detail: str | None,
    requested_at: str,
    requested_by: str,
    outcome: str,
    vonage_status: int | None = None,
    result: str | None = None,
) -> dict:
    """A call_actions row (plain values): what was asked of which leg, when, by whom, and what came of it."""
    assert outcome in ACTION_OUTCOMES, outcome
    return {
        "conversation_uuid": leg.conversation_uuid if leg else None,
        "leg_uuid": leg_uuid,
        "action": action,
        "detail": detail,
        "requested_at": requested_at,
        "requested_by": requested_by,
        "outcome": outcome,
        "vonage_status": vonage_status,
        "result": result,
    }


def record_action(database: Database, row: dict) -> None:
    """Store one action in its call's timeline, and mark the call as changed (the page then shows it)."""
    row = fit("call_actions", row)
    with database.connect(writing=True) as connection:
        connection.execute(call_actions.insert().values(**row))
        if row["conversation_uuid"] is not None:
            connection.execute(
                update(conversations)
                .where(
                    conversations.c.conversation_uuid == row["conversation_uuid"],
                    conversations.c.updated_at < row["requested_at"],
                )
                .values(updated_at=row["requested_at"])
            )
