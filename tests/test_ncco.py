"""Callee normalisation, the destination policy and NCCO building, without HTTP."""

import pytest
from phonenumbers import PhoneNumberType
from vonage_voice.models import Connect, Talk

from ncco import (
    CallPlan,
    app_connect_ncco,
    callee_from_answer,
    connect_ncco,
    decide_answer,
    refusal_ncco,
    talk,
)
from policy import DestinationPolicy, NumberError, normalize_callee, normalize_number
from vonage_helper.ncco_models import parse_ncco


@pytest.mark.parametrize(
    "written",
    ["447700900000", "+44 7700 900000", "0044 7700 900000", "+44 (0)7700-900000", "+447700900000"],
)
def test_every_international_spelling_gives_vonage_digits(written):
    assert normalize_number(written) == "447700900000"


def test_national_format_uses_default_region():
    assert normalize_number("07700 900000", "GB") == "447700900000"


def test_national_format_without_default_region_names_the_fix():
    with pytest.raises(NumberError, match="DEFAULT_REGION"):
        normalize_number("07700 900000")


def test_vonage_digits_win_over_default_region():
    # A US server still reads Vonage's own format as international.
    assert normalize_number("447700900000", "US") == "447700900000"


def test_national_number_without_trunk_prefix_is_read_in_default_region_when_only_that_is_valid():
    assert normalize_number("6502530000", "US") == "16502530000"


@pytest.mark.parametrize("written", ["abc", "+44 12", "+1", "", "   ", "4" * 70, "+999 1234567"])
def test_impossible_numbers_are_refused(written):
    with pytest.raises(NumberError):
        normalize_number(written)


def test_tutorial_number_is_allowed_though_libphonenumber_calls_it_not_valid():
    assert normalize_callee("447700900000", DestinationPolicy()) == "447700900000"


def test_premium_rate_number_is_refused_by_default():
    with pytest.raises(NumberError, match="PREMIUM_RATE") as refusal:
        normalize_callee("+44 909 879 0000", DestinationPolicy())
    assert refusal.value.spoken == "calls to premium rate numbers are not allowed"


def test_shared_cost_number_is_refused_by_default():
    with pytest.raises(NumberError, match="SHARED_COST"):
        normalize_callee("+33 8 84 01 23 45", DestinationPolicy())


def test_blocked_types_are_configurable():
    policy = DestinationPolicy(blocked_types=frozenset({PhoneNumberType.MOBILE}))
    assert normalize_callee("+44 909 879 0000", policy) == "449098790000"
    with pytest.raises(NumberError, match="MOBILE"):
        normalize_callee("+44 7911 123456", policy)


def test_country_outside_allowed_countries_is_refused():
    policy = DestinationPolicy(allowed_countries=frozenset({"GB"}))
    with pytest.raises(NumberError, match="US, which is not in ALLOWED_COUNTRIES") as refusal:
        normalize_callee("+1 201 555 0123", policy)
    assert refusal.value.spoken == "calls to that country are not allowed"


def test_allowed_countries_place_unplaceable_numbers_in_their_calling_codes_main_region():
    policy = DestinationPolicy(allowed_countries=frozenset({"GB"}))
    assert normalize_callee("447700900000", policy) == "447700900000"


def test_nanp_number_is_placed_in_its_own_country_not_the_us():
    policy = DestinationPolicy(allowed_countries=frozenset({"US"}))
    with pytest.raises(NumberError, match="JM"):
        normalize_callee("+1 876 555 0123", policy)


def test_own_number_is_never_bridged_back_to_itself():
    policy = DestinationPolicy(own_number="447700900001")
    with pytest.raises(NumberError, match="own number") as refusal:
        normalize_callee("+44 7700 900001", policy)
    assert "own number" in refusal.value.spoken


def test_missing_callee_is_refused():
    with pytest.raises(NumberError) as refusal:
        normalize_callee(None, DestinationPolicy())
    assert refusal.value.spoken == "no number to call was given"


def test_connect_ncco_greets_then_connects_with_random_from_number_when_no_caller_id():
    ncco = connect_ncco("447700900000", CallPlan())
    talk, connect = parse_ncco(ncco)
    assert isinstance(talk, Talk) and talk.text == "Please wait while we connect you."
    assert isinstance(connect, Connect)
    assert connect.randomFromNumber is True and connect.from_ is None
    assert connect.endpoint[0].number == "447700900000"
    assert ncco[1]["endpoint"] == [{"type": "phone", "number": "447700900000"}]


def test_connect_ncco_uses_caller_id_timeout_and_limit():
    plan = CallPlan(greeting="Hello", language="en-GB", from_number="447700900001", ringing_timeout=30, call_limit=600)
    ncco = connect_ncco("447700900000", plan)
    parse_ncco(ncco)
    assert ncco[0] == {"action": "talk", "text": "Hello", "language": "en-GB"}
    assert ncco[1]["from"] == "447700900001"
    assert "randomFromNumber" not in ncco[1]
    assert (ncco[1]["timeout"], ncco[1]["limit"]) == (30, 600)


def test_refusal_ncco_is_one_talk_sentence():
    ncco = refusal_ncco("calls to that country are not allowed", "en-GB")
    (talk,) = parse_ncco(ncco)
    assert talk.text == "Sorry, this call cannot be connected: calls to that country are not allowed."
    assert talk.language == "en-GB"


@pytest.mark.parametrize(
    "ncco, problem",
    [
        ([], "non-empty"),
        ({"action": "talk"}, "array"),
        ([{"action": "shout", "text": "hi"}], "unknown action"),
        ([{"action": "talk"}], "invalid"),
        ([{"action": "talk", "text": "hi", "colour": "red"}], "does not know"),
        (
            [
                {
                    "action": "connect",
                    "endpoint": [{"type": "phone", "number": "+447700900000"}],
                    "randomFromNumber": True,
                }
            ],
            "invalid",
        ),
    ],
)
def test_parse_ncco_rejects_what_vonage_would_reject(ncco, problem):
    with pytest.raises(ValueError, match=problem):
        parse_ncco(ncco)


def test_callee_comes_from_top_level_to():
    assert callee_from_answer({"to": "447700900000", "custom_data": {"to": "449098790000"}}) == "447700900000"


def test_callee_falls_back_to_custom_data_object():
    assert callee_from_answer({"from_user": "Alice", "custom_data": {"to": "447700900000"}}) == "447700900000"


def test_callee_falls_back_to_custom_data_json_string():
    assert callee_from_answer({"custom_data": '{"to": "447700900000"}'}) == "447700900000"


def test_callee_given_as_json_number_is_read_as_text():
    assert callee_from_answer({"to": 447700900000}) == "447700900000"


def test_unreadable_answer_request_raises_number_error():
    with pytest.raises(NumberError, match="could not be read"):
        callee_from_answer({"to": {"number": "447700900000"}})


def test_decide_answer_never_raises_and_records_the_reason():
    decision = decide_answer({"to": ["x"]}, DestinationPolicy(), CallPlan())
    assert decision.connected is False
    assert decision.reason
    parse_ncco(decision.ncco)


def test_custom_data_to_that_is_not_text_is_refused():
    decision = decide_answer({"custom_data": {"to": ["447700900000"]}}, DestinationPolicy(), CallPlan())
    assert decision.connected is False and "custom_data.to" in decision.reason


def test_decisions_for_the_same_callee_agree_and_follow_the_policy():
    allowed = decide_answer({"to": "447700900000"}, DestinationPolicy(), CallPlan())
    again = decide_answer({"to": "447700900000"}, DestinationPolicy(), CallPlan())
    gb_only = decide_answer({"to": "447700900000"}, DestinationPolicy(allowed_countries=frozenset({"FR"})), CallPlan())
    assert allowed.ncco == again.ncco and allowed.connected and again.connected
    assert gb_only.connected is False


# --- app endpoints: where the SDK's Connect model and the API disagree -----------------------------------------


APP_CONNECT_WITHOUT_FROM = {"action": "connect", "endpoint": [{"type": "app", "user": "Bob"}], "timeout": 60}


def test_the_sdks_connect_model_alone_refuses_an_app_endpoint_without_from():
    # Why parse_ncco makes an exception: the API takes this connect (docs/platform.md), the SDK's model does not.
    from vonage_voice.errors import NccoActionError

    with pytest.raises(NccoActionError, match="from_"):
        Connect.model_validate(APP_CONNECT_WITHOUT_FROM)


def test_parse_ncco_follows_the_api_for_an_app_endpoint_without_from():
    (connect,) = parse_ncco([APP_CONNECT_WITHOUT_FROM])
    assert connect.endpoint[0].user == "Bob"
    assert connect.from_ is None and connect.randomFromNumber is None


@pytest.mark.parametrize(
    "connect",
    [
        {"action": "connect", "endpoint": [{"type": "phone", "number": "447700900000"}]},
        {"action": "connect", "endpoint": [{"type": "app", "user": "Bob"}], "colour": "red"},
        {"action": "connect", "endpoint": [{"type": "app"}]},
    ],
    ids=["phone without from", "unknown field", "app without user"],
)
def test_parse_ncco_makes_no_other_exception(connect):
    with pytest.raises(ValueError, match="action 0 \\(connect\\)"):
        parse_ncco([connect])


def test_app_connect_ncco_shows_a_phone_callers_number_and_no_random_number():
    ncco = app_connect_ncco("Alice", CallPlan(), caller_number="447700900123")
    assert ncco[1] == {
        "action": "connect",
        "endpoint": [{"type": "app", "user": "Alice"}],
        "from": "447700900123",
        "timeout": 60,
        "limit": 7200,
    }
    assert parse_ncco(ncco)[1].from_ == "447700900123"


def test_talk_carries_a_style_only_when_given():
    assert talk("Hi", "en-GB", 4) == {"action": "talk", "text": "Hi", "language": "en-GB", "style": 4}
    assert "style" not in talk("Hi", "en-GB")
    assert parse_ncco([talk("Hi", "en-GB", 4)])[0].style == 4


def test_custom_data_nested_deeper_than_the_json_parser_goes_is_no_callee():
    assert callee_from_answer({"custom_data": "[" * 100_000 + "]" * 100_000}) is None


# --- RECORD_CALLS ---


def test_a_recorded_call_records_before_its_connect_in_every_shape_and_a_refusal_records_nothing():
    from ncco import CallRouting, decide_answer

    plan = CallPlan(record_calls=True, recording_url="https://example.test/voice/recording", record_format="wav")
    routing = CallRouting(inbound_routes=(("447700900001", "Alice"),), callable_users=frozenset({"Bob"}))
    policy = DestinationPolicy()
    requests = {
        "outbound": {"to": "447700900000", "from_user": "Alice"},
        "inbound": {"to": "447700900001", "from": "447700900123"},
        "app-to-app": {"to": "Bob", "from_user": "Alice"},
    }
    record = {
        "action": "record",
        "format": "wav",
        "split": "conversation",
        "channels": 2,
        "eventUrl": ["https://example.test/voice/recording"],
    }
    for shape, fields in requests.items():
        decision = decide_answer(fields, policy, plan, routing)
        assert [action["action"] for action in decision.ncco] == ["talk", "record", "connect"], shape
        assert decision.ncco[1] == record and decision.recorded, shape
        parse_ncco(decision.ncco)  # the SDK's models take it
    refused = decide_answer({"to": "12", "from_user": "Alice"}, policy, plan, routing)
    assert [action["action"] for action in refused.ncco] == ["talk"] and not refused.recorded
    unrecorded = decide_answer(requests["outbound"], policy, CallPlan(), routing)
    assert "record" not in [action["action"] for action in unrecorded.ncco] and not unrecorded.recorded


def test_the_announcement_is_said_first_in_the_configured_voice():
    from ncco import decide_answer

    plan = CallPlan(record_calls=True, record_announcement="This call is recorded.", language="en-GB", style=3)
    ncco = decide_answer({"to": "447700900000", "from_user": "Alice"}, DestinationPolicy(), plan).ncco
    assert ncco[0] == {"action": "talk", "text": "This call is recorded.", "language": "en-GB", "style": 3}
    assert [action["action"] for action in ncco] == ["talk", "talk", "record", "connect"]
    assert "eventUrl" not in ncco[2]  # no base known: Vonage posts it to the application's event URL
