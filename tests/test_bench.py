"""The benchmark's in-process measurement (bench/inprocess.py): it must measure requests that were served and
stored, never error paths."""

import pytest

from bench import inprocess
from conftest import CALL_LOG_TOKEN, built_app, call_log_reader


def test_the_in_process_measurement_serves_and_stores_every_request(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite://")  # restored afterwards; main points the writer elsewhere
    monkeypatch.setattr(inprocess, "WARM_UP", 5)
    costs = inprocess.main(tmp_path, 20)
    assert set(costs) == {"cheapest", "answer", "event"}
    assert all(cost > 0 for cost in costs.values())
    # Every signed event of the warm-up and the measured batch went through the writer into the database.
    with call_log_reader(f"sqlite:///{tmp_path / 'inprocess.db'}") as reader:
        assert reader.count_events() == 25


def test_a_refused_request_fails_the_measurement(tmp_path):
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "CALL_LOG_TOKEN": CALL_LOG_TOKEN,
        "VONAGE_SIGNATURE_SECRET": "not-the-bench-secret-0123456789abcdef",
    }
    with built_app(config) as app, pytest.raises(SystemExit, match="2 requests were refused .first: 401"):
        inprocess.cpu_per_request(app.wsgi_app, inprocess.environs("answer", 2))
