"""The account's numbers, through the SDK's Numbers API client (`GET /account/numbers`, `POST /number/update` on
VONAGE_REST_HOST), for `flask setup --number`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import requests
from pydantic import ValidationError
from vonage import Vonage
from vonage_http_client import HttpRequestError
from vonage_numbers import ListOwnedNumbersFilter, NumbersError, OwnedNumber, UpdateNumberParams

from vonage_helper.clients import explain
from vonage_helper.errors import EXIT_OTHER, EXIT_SETTINGS, HelperError

# Numbers whose digits begin with the given ones (the Numbers API's search_pattern 0), then the exact one.
_STARTS_WITH = 0


def owned_number(client: Vonage, digits: str) -> OwnedNumber:
    """The account's number `digits` (E.164 digits, as Vonage writes them), with its country; HelperError if the
    account does not own it."""
    search = ListOwnedNumbersFilter(pattern=digits, search_pattern=_STARTS_WITH)
    with _numbers_api("listing the account's numbers"):
        numbers, _, _ = client.numbers.list_owned_numbers(search)
    for number in numbers:
        if number.msisdn == digits:
            if not number.country:
                raise _malformed("listing the account's numbers", f"no country for {digits}")
            return number
    raise HelperError(
        f"{digits} is not one of this account's numbers; buy it, or see the ones you have, under Numbers in the "
        "Vonage dashboard",
        EXIT_SETTINGS,
    )


def link_number(client: Vonage, number: OwnedNumber, application_id: str) -> None:
    """Send the number's calls to the application (`app_id`); HelperError if Vonage refuses."""
    update = UpdateNumberParams(country=number.country, msisdn=number.msisdn, app_id=application_id)
    # The SDK's client keeps the Content-Type of its last JSON request (set on a dict it shares between requests),
    # so this form, sent after the application was created, would go labelled as JSON: a client of its own sends it.
    own = Vonage(client.http_client.auth, client.http_client.http_client_options)
    with _numbers_api(f"linking {number.msisdn}"):
        own.numbers.update_number(update)


@contextlib.contextmanager
def _numbers_api(doing: str) -> Iterator[None]:
    try:
        yield
    except (HttpRequestError, requests.RequestException) as error:
        raise explain(error, "account") from None
    except NumbersError as error:
        # A 200 whose error-code is not 200: Vonage's own refusal, with its label.
        raise HelperError(f"Vonage refused {doing}: {error}", EXIT_OTHER) from None
    except (TypeError, KeyError, ValidationError) as error:
        # The SDK indexes into the answer as documented; an answer of another shape (not JSON, a field missing)
        # surfaces here.
        raise _malformed(doing, type(error).__name__) from None


def _malformed(doing: str, detail: str) -> HelperError:
    return HelperError(
        f"Vonage's answer to {doing} was not what its Numbers API documents ({detail}); try again shortly",
        EXIT_OTHER,
    )
