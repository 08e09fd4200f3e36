"""`flask live`, `flask hangup` and the other commands that act on a call, run as a user runs them (python -m flask
in a project folder), on the call log of a running server and against a stand-in of the Voice API; and the whole
loop: `flask simulate --scenario long` holds a call open, `flask hangup` ends it, Vonage posts its completed event."""

import subprocess
import sys
import threading

import pytest
import requests

from conftest import ROOT
from support import keys
from support.commands import assert_one_error_line
from support.live_calls import (
    APPLICATION_ID,
    BEARER,
    call,
    call_control_server,
    call_control_settings,
    end_call,
    start_call,
)
from support.production import wait_until
from support.servers import run_env
from support.voice_standin import VoiceStandIn


@pytest.fixture(scope="module")
def home(certificate):
    region = VoiceStandIn(certificate, APPLICATION_ID, keys.rsa_key().public_key())
    yield region
    region.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("live-commands")


@pytest.fixture(scope="module")
def server(folder, certificate, home):
    with call_control_server(folder, certificate, [home]) as url:
        yield url


def flask(folder, certificate, home, *args, **settings) -> subprocess.CompletedProcess:
    env = run_env(
        FLASK_APP="app", PYTHONPATH=str(ROOT), **call_control_settings(folder, certificate, [home], **settings)
    )
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=90
    )


@pytest.fixture
def live(server, home):
    leg, conversation = start_call(server, home.url)
    home.hold(leg)
    return leg, conversation


def test_live_lists_the_legs_in_progress(folder, certificate, home, live):
    leg, _ = live
    listed = flask(folder, certificate, home, "live")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if leg in line]
    assert row.split()[:5] == [leg, "inbound", "-", "Alice", "answered"]
    assert listed.stdout.splitlines()[0].split() == ["LEG", "DIR", "FROM", "TO", "STATUS", "SINCE"]


@pytest.mark.parametrize(
    ("args", "method", "route", "body"),
    [
        (["hangup"], "PUT", "", {"action": "hangup"}),
        (["mute"], "PUT", "", {"action": "mute"}),
        (["unmute"], "PUT", "", {"action": "unmute"}),
        (["say", "{leg}", "Please hold"], "PUT", "/talk", {"text": "Please hold", "language": "en-US"}),
    ],
    ids=["hangup", "mute", "unmute", "say"],
)
def test_each_command_acts_in_one_line(server, folder, certificate, home, live, args, method, route, body):
    leg, conversation = live
    before = len(home.requests())
    command = [args[0], leg, *args[2:]] if len(args) > 1 else [args[0], leg]
    done = flask(folder, certificate, home, *command)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{args[0]} on leg {leg}: Vonage accepted it ({204 if route == '' else 200})\n"
    (received,) = home.requests()[before:]
    assert (received.method, received.path, received.body) == (method, f"/v1/calls/{leg}{route}", body)
    (stored,) = call(server, conversation)["actions"]
    assert (stored["requested_by"], stored["outcome"]) == ("command line", "accepted")


def test_transfer_goes_through_the_destination_policy(folder, certificate, home, live):
    leg, _ = live
    moved = flask(folder, certificate, home, "transfer", leg, "+44 7700 900000")
    assert moved.returncode == 0, moved.stderr
    connect = home.requests()[-1].body["destination"]["ncco"][-1]
    assert connect["endpoint"] == [{"type": "phone", "number": "447700900000"}]
    refused = flask(folder, certificate, home, "transfer", leg, "449098790000")
    assert_one_error_line(refused, "cannot transfer to '449098790000'", "PREMIUM_RATE", exit_code=1)


def test_a_throttled_command_says_so_and_then_succeeds(folder, certificate, home, live):
    leg, _ = live
    home.throttle(1)
    done = flask(folder, certificate, home, "mute", leg)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "throttled, retrying in 1 s"
    assert done.stdout.startswith(f"mute on leg {leg}: Vonage accepted it")


def test_an_unknown_leg_is_one_error_line(folder, certificate, home, server):
    done = flask(folder, certificate, home, "hangup", "no-such-leg")
    assert_one_error_line(done, "no leg no-such-leg in the call log", "flask live", exit_code=1)


def test_a_call_already_ended_is_one_error_line(server, folder, certificate, home, live):
    leg, conversation = live
    end_call(server, leg, conversation)
    done = flask(folder, certificate, home, "hangup", leg)
    assert_one_error_line(done, f"leg {leg} has ended (completed)", exit_code=1)


def test_vonages_refusal_is_one_error_line_with_its_reason(server, folder, certificate, home):
    leg, _ = start_call(server, home.url)  # not held by this region: Vonage answers 404
    done = flask(folder, certificate, home, "hangup", leg)
    assert_one_error_line(done, "Vonage answered 404: Not Found", exit_code=1)


def test_with_call_control_off_the_command_says_how_to_turn_it_on(folder, certificate, home):
    done = flask(folder, certificate, home, "hangup", "leg-1", CALL_CONTROL="off")
    assert_one_error_line(done, "acting on calls is off: set CALL_CONTROL=on", exit_code=1)


def test_missing_credentials_are_one_error_line(folder, certificate, home):
    done = flask(folder, certificate, home, "hangup", "leg-1", VONAGE_PRIVATE_KEY=None)
    assert_one_error_line(done, "CALL_CONTROL=on needs VONAGE_PRIVATE_KEY", exit_code=2)


def test_simulate_long_then_hangup_closes_the_loop(server, folder, certificate, home):
    def vonage_hangs_up(leg: str) -> None:
        # As Vonage does once a leg is hung up: its completed event, to the application's event URL.
        calls = requests.get(f"{server}/api/calls", params={"status": "in_progress"}, headers=BEARER, timeout=10)
        for found in calls.json()["calls"]:
            for each in found["legs"]:
                if each["uuid"] == leg:
                    end_call(server, leg, found["conversation_uuid"])

    home.holds_every_leg = True
    home.on_hangup = lambda leg: threading.Thread(target=vonage_hangs_up, args=(leg,)).start()
    try:
        held = flask(
            folder, certificate, home, "simulate", "--scenario", "long", "--url", server, "--region-url", home.url
        )
        assert held.returncode == 0, held.stdout + held.stderr
        last = held.stdout.splitlines()[-1]
        assert last.startswith("ok: the call is answered and held open; end it with: flask hangup ")
        leg = last.rsplit(" ", 1)[1]
        listed = flask(folder, certificate, home, "live")
        assert leg in listed.stdout
        done = flask(folder, certificate, home, "hangup", leg)
        assert done.returncode == 0, done.stderr
        assert home.requests()[-1].path == f"/v1/calls/{leg}"
        wait_until(lambda: leg not in flask(folder, certificate, home, "live").stdout, 30, "the leg did not end")
    finally:
        home.holds_every_leg = False
        home.on_hangup = lambda leg: None
