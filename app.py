"""The webhook server's application factory: it reads the settings and wires logging, the call log, the
blueprints and the `flask` commands together. The parts, one layer each (docs/architecture.md):

    ncco.py, events.py, config.py   the call core: plain values in, plain values out
    runtime/     logging, metrics and stop signals, shared by every process
    calllog/     the call log: storage, the writer, /api/calls, /calls
    vonage_helper/   Vonage's REST APIs, through the SDK
    identity/    logging Client SDK users in: ID tokens checked, login tokens signed
    outbound/    work that calls out: the background jobs (recordings fetched), acting on live calls
    edge/        the HTTP edge: /voice/answer, /voice/fallback, /voice/event, /client/token, signatures, errors, / and /health
    simulator/   plays whole signed calls against a server
    commands/    the `flask` commands, imported when run
"""

from __future__ import annotations

from runtime.project_python import require_project_python  # isort: split

# Before any of the server's packages is imported: a shell without the .venv gets one line, not a traceback.
require_project_python()

import atexit
import sys
from collections.abc import Mapping

from flask import Flask
from prometheus_client import CollectorRegistry

from calllog import CallLog, StorageError
from calllog.api import bp as api_blueprint
from calllog.deliveries import forwarding
from calllog.page import bp as page_blueprint
from calllog.token_store import call_log_token
from commands import cli
from config import Settings, load_settings, settings_from
from edge import call_actions, client_token, errors, recordings, status, voice
from edge.payloads import MAX_BODY_BYTES
from edge.signatures import REFUSAL_CODES
from identity.refusals import REFUSAL_CODES as LOGIN_REFUSAL_CODES
from ncco import WEBHOOKS
from outbound import background_jobs
from outbound.recording_store import open_store
from runtime import metrics
from runtime.logs import configure_logging


def create_app(test_config: Mapping[str, str] | None = None, settings: Settings | None = None) -> Flask:
    """Build the server. `test_config` (the variables) or `settings` replace the environment and .env (for tests)
    when given."""
    with cli.settings_end_a_command():
        if settings is None:
            settings = settings_from(test_config) if test_config is not None else load_settings()
        token = call_log_token(settings)
    app = Flask(__name__, static_folder=None, instance_path=settings.instance_path)
    # Flask refuses larger bodies with 413 before a route reads them.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SETTINGS"] = settings
    app.config["CALL_LOG_TOKEN"] = token
    command = cli.running_a_command()
    log = configure_logging(settings.log_format, settings.no_color, sys.stderr if command else None)
    counted = metrics.Metrics(
        CollectorRegistry(), (webhook.name for webhook in WEBHOOKS), REFUSAL_CODES, LOGIN_REFUSAL_CODES
    )
    app.extensions["metrics"] = counted
    forwarded = forwarding(settings.forward_urls, settings.forward_events)
    call_log = CallLog(settings.database_url, settings.writer_socket, counted, settings.call_log_retention, forwarded)
    app.extensions["call_log"] = call_log
    # The app owns what it opened: its call log is closed once, at exit (answers still queued are sent first), or
    # earlier by whoever is done with the app (close_app).
    atexit.register(call_log.close)
    try:
        call_log.database.ensure_schema()
    except StorageError as error:
        # Answering calls needs no database: start anyway, and answer events with 503 until it is back. A command
        # that needs the call log says so itself, in its one error line.
        if not command:
            log.error("call log unavailable at start-up: %s", error)
    voice.init_app(app, settings, call_log, log, counted)
    app.register_blueprint(status.bp)
    with cli.settings_end_a_command():
        client_token.init_app(app, settings, log, counted, call_log.database)
        call_actions.init_app(app, settings, call_log.database)
    app.extensions["recordings_store"] = open_store(
        settings.recordings_location, settings.recordings_s3_endpoint, settings.instance_path
    )
    app.register_blueprint(recordings.bp)
    app.register_blueprint(api_blueprint)
    app.register_blueprint(page_blueprint)
    errors.init_app(app)
    cli.init_app(app)
    if settings.writer_socket is None and not command:
        # An app with a writer of its own (`flask run`) runs the background jobs too; under `make run` serve.py does.
        jobs = background_jobs(settings, counted.registry)
        app.extensions["jobs"] = jobs
        atexit.register(jobs.stop)
        jobs.start()
    return app


def close_app(app: Flask) -> None:
    """Close what create_app opened: the call log (its writer connection, its own writer thread, the database)."""
    jobs = app.extensions.get("jobs")
    if jobs is not None:
        atexit.unregister(jobs.stop)
        jobs.stop()
    controller = app.extensions.get(call_actions.EXTENSION)
    if controller is not None:
        controller.close()
    call_log = app.extensions["call_log"]
    atexit.unregister(call_log.close)
    call_log.close()
