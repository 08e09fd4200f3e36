"""A recording's audio, for the call log's player and for download: GET /api/recordings/<uuid>/audio, with the call
log's token (the page's cookie or the Authorization header), in byte ranges so that a browser can seek."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import NotFound, RequestedRangeNotSatisfiable, ServiceUnavailable

from calllog import access
from calllog.api import token_refusal
from calllog.recordings import STORED, Recordings
from calllog.schema import StorageError
from outbound.recording_store import StoreError, byte_range, content_type_of

bp = Blueprint("recordings", __name__)


@bp.before_request
def require_token():
    refusal = token_refusal("api", "a recording needs the call log's token")
    if refusal is not None:
        raise refusal


@bp.route("/api/recordings/<recording_uuid>/audio", methods=["GET", "HEAD"])
def audio(recording_uuid: str):
    try:
        recording = Recordings(current_app.extensions["call_log"].database).get(recording_uuid)
    except StorageError as error:
        raise ServiceUnavailable(f"the call log cannot be read ({error}); try again shortly") from None
    if recording is None:
        raise NotFound(f"no recording {recording_uuid} in the call log")
    if recording.status != STORED or not recording.location:
        reason = f": {recording.last_error}" if recording.last_error else ""
        raise NotFound(f"recording {recording_uuid} is {recording.status}, not stored yet{reason}")
    store = current_app.extensions["recordings_store"]
    try:
        size = store.size(recording.location)
        wanted = byte_range(request.headers.get("Range"), size)
    except ValueError as error:
        refused = RequestedRangeNotSatisfiable(length=size, description=f"{error}; ask for bytes=0-{size - 1}")
        raise refused from None
    except StoreError as error:
        raise ServiceUnavailable(f"the recording cannot be read from its store ({error})") from None
    first, last = wanted if wanted is not None else (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(max(0, last - first + 1))}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if request.args.get("download"):
        name = recording.location.rsplit("/", 1)[-1]
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    body = [] if request.method == "HEAD" or size == 0 else _streamed(store, recording.location, first, last)
    response = Response(body, status=206 if wanted is not None else 200, headers=headers)
    response.content_type = content_type_of(recording.location)
    return access.add_headers(response, access.API_HEADERS)


def _streamed(store, location: str, first: int, last: int):
    try:
        chunks = store.read(location, first, last)
    except StoreError as error:
        raise ServiceUnavailable(f"the recording cannot be read from its store ({error})") from None
    return chunks
