"""`flask call`: place a call from the server, through the same destination policy as /voice/answer."""

from __future__ import annotations

from dataclasses import dataclass, replace

import requests
from vonage import Vonage
from vonage_http_client import HttpRequestError
from vonage_voice.models import CreateCallRequest, Phone, ToPhone

from config import Settings
from ncco import EVENT_WEBHOOK, connect_ncco, talk
from policy import NumberError, normalize_callee
from vonage_helper.clients import EXIT_REFUSED, HelperError, application_client, explain
from vonage_helper.ncco_models import parse_ncco

DEFAULT_MESSAGE = "Hello. This is a call from your Vonage voice server."


@dataclass(frozen=True)
class PlacedCall:
    uuid: str
    conversation_uuid: str
    status: str
    to: str
    ncco: list


def place_call(
    settings: Settings, to: str, say: str | None = None, connect: str | None = None, client: Vonage | None = None
) -> PlacedCall:
    """Call `to` from the server: speak `say`, and bridge to `connect` when answered (click-to-call).

    Both numbers go through the same normalisation and policy as /voice/answer. Raises HelperError.
    """
    policy = settings.destination_policy
    try:
        callee = normalize_callee(to, policy)
        other = normalize_callee(connect, policy) if connect else None
    except NumberError as refusal:
        raise HelperError(f"refused: {refusal.detail}", EXIT_REFUSED) from None
    if other:
        ncco = connect_ncco(other, replace(settings.call_plan, greeting=say or settings.greeting))
    else:
        ncco = [talk(say or DEFAULT_MESSAGE, settings.tts_language)]
    caller_id = (
        {"from_": Phone(number=settings.vonage_number)} if settings.vonage_number else {"random_from_number": True}
    )
    event_url = {"event_url": [settings.public_url + EVENT_WEBHOOK.path]} if settings.public_url else {}
    request = CreateCallRequest(to=[ToPhone(number=callee)], ncco=parse_ncco(ncco), **caller_id, **event_url)
    client = client or application_client(settings)
    try:
        response = client.voice.create_call(request)
    except (HttpRequestError, requests.RequestException) as error:
        raise explain(error, "application") from None
    return PlacedCall(response.uuid, response.conversation_uuid, response.status, callee, ncco)
