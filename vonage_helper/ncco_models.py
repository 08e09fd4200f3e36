"""NCCOs checked with the Vonage SDK's own models: what the simulator, `flask call` and the tests use to prove an
NCCO is one Vonage runs. The server never imports this (the models load the SDK's REST client and pydantic)."""

from __future__ import annotations

from pydantic import ValidationError
from vonage_voice.errors import NccoActionError
from vonage_voice.models import Connect, Conversation, Input, Notify, Record, Stream, Talk, Transfer, Wait

MODELS = {
    "talk": Talk,
    "connect": Connect,
    "stream": Stream,
    "input": Input,
    "record": Record,
    "conversation": Conversation,
    "notify": Notify,
    "wait": Wait,
    "transfer": Transfer,
}


def parse_ncco(actions) -> list:
    """Check an NCCO with the Vonage SDK's models and return them; raise ValueError saying what is wrong.

    Every key must be one the model knows: an action is valid only if it survives a round trip.
    """
    if not isinstance(actions, list) or not actions:
        raise ValueError("an NCCO must be a non-empty JSON array of actions")
    parsed_actions = []
    for index, action in enumerate(actions):
        if not isinstance(action, dict):
            raise ValueError(f"action {index} is not an object")
        model = MODELS.get(action.get("action"))
        if model is None:
            raise ValueError(f"action {index} has unknown action {action.get('action')!r}")
        fields = {("from_" if key == "from" else key): value for key, value in action.items()}
        lent_caller_id = _is_app_connect_without_caller_id(action)
        if lent_caller_id:
            fields["randomFromNumber"] = True
        try:
            parsed = model.model_validate(fields)
        except (ValidationError, ValueError, NccoActionError) as error:
            # The models' own checks (a connect's caller ID) raise the SDK's NccoActionError, not a ValueError.
            raise ValueError(f"action {index} ({action['action']}) is invalid: {error}") from None
        if lent_caller_id:
            parsed.randomFromNumber = None
        if parsed.model_dump(mode="json", by_alias=True, exclude_none=True) != action:
            raise ValueError(f"action {index} ({action['action']}) has fields the SDK's model does not know")
        parsed_actions.append(parsed)
    return parsed_actions


def _is_app_connect_without_caller_id(action: dict) -> bool:
    """A connect to an app user with neither `from` nor `randomFromNumber`. The API takes it (docs/platform.md: leave
    `from` out when an app user calls another user); the SDK's Connect model refuses it. Here the API wins:
    the model is lent randomFromNumber to check everything else, and the parsed action gets it taken back."""
    endpoints = action.get("endpoint")
    return (
        action.get("action") == "connect"
        and "from" not in action
        and "randomFromNumber" not in action
        and isinstance(endpoints, list)
        and len(endpoints) == 1
        and isinstance(endpoints[0], dict)
        and endpoints[0].get("type") == "app"
    )
