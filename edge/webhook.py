"""A webhook request as the voice routes read it: body and query string read once, fields from either."""

from __future__ import annotations

import io

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.wrappers import Request

from edge.payloads import MAX_BODY_BYTES, PayloadError, first_values, parse_query, read_payload
from events import Payload

TOO_LARGE = f"the body is over the limit of {MAX_BODY_BYTES} bytes; Vonage's webhooks are far smaller"


class _Request(Request):
    """werkzeug's request, for what a webhook rarely needs: a chunked body, a multipart form, the decoded path."""

    max_content_length = MAX_BODY_BYTES  # a chunked body too, read by werkzeug


class WebhookRequest:
    """A webhook request, read straight from the WSGI environ: the query string parsed once (the signature check
    and the fields both need it), no wait on the input stream for a request that has no body, a body read in one
    call. werkzeug's request object is built only for the rare parts (a chunked body, a multipart form, the path
    for a log line): building it for every webhook cost more than the rest of reading one.
    """

    signature_verified = False  # set by the signature check when the request carried a valid one
    claims: dict | None = None  # the verified token's claims (voice.check_token)

    def __init__(self, environ: dict, body: bytes | None = None):
        """`body`: the body when the server has already read it (edge/rsgi.py reads it before the handler runs)."""
        self.environ = environ
        self._body = body
        self._query_pairs: list[tuple[str, str]] | None = None
        self._werkzeug: Request | None = None

    # Each part is cached in a plain attribute: functools.cached_property takes one lock for every instance of the
    # class on Python 3.11, so one request waiting for its body held every other request's body read behind it.

    @property
    def werkzeug(self) -> Request:
        if self._werkzeug is None:
            self._werkzeug = _Request(self.environ)
        return self._werkzeug

    @property
    def method(self) -> str:
        return self.environ.get("REQUEST_METHOD", "GET").upper()

    @property
    def path(self) -> str:
        return self.werkzeug.path

    @property
    def authorization_header(self) -> str | None:
        return self.environ.get("HTTP_AUTHORIZATION")

    @property
    def content_type_header(self) -> str | None:
        return self.environ.get("CONTENT_TYPE")

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        if self._query_pairs is None:
            self._query_pairs = parse_query(self.environ.get("QUERY_STRING", "").encode("latin1"))
        return self._query_pairs

    def body_received(self, body: bytes) -> None:
        """The body, as the server read it before the handler (serving it on an event loop: edge/rsgi.py)."""
        self._body = body

    @property
    def body(self) -> bytes:
        """The body as sent. Raises RequestEntityTooLarge (413) or ClientDisconnected (400)."""
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        # HTTP/1.1: a request with neither Content-Length nor chunked encoding has no body.
        if "chunked" in self.environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.werkzeug.get_data()
        length = _content_length(self.environ.get("CONTENT_LENGTH"))
        if not length:
            return b""
        if length > MAX_BODY_BYTES:
            raise RequestEntityTooLarge(TOO_LARGE)
        # One read of the announced length: werkzeug's stream reads through a 64 KiB buffer and several layers,
        # and with granian every read call gives up the GIL, so each one costs a wait for it under load.
        data = self.environ["wsgi.input"].read(length)
        if len(data) < length:
            raise ClientDisconnected(
                f"the body ended after {len(data)} of the {length} bytes its Content-Length announced"
            )
        return data

    def payload(self) -> Payload:
        """The webhook's payload, from the query string and the body; raises PayloadError naming the problem.

        A signed request gives only what its signature covers: the body of a POST (its payload_hash is the body's
        hash), the query of a GET. Query fields on a signed POST are left out, or a captured request could be
        sent again with `?to=` another number and be acted on as if Vonage had sent it.
        """
        body = self.body
        content_type = self.content_type_header
        multipart = content_type is not None and content_type.lower().startswith("multipart/form-data")
        form = _multipart_form(body, self.werkzeug.mimetype, self.werkzeug.mimetype_params) if multipart else None
        method = self.method
        query = {} if self.signature_verified and method != "GET" else first_values(self.query_pairs)
        return read_payload(method, content_type, body, query, form)


def _content_length(header: str | None) -> int | None:
    """Content-Length as werkzeug reads it: None when absent, 0 when it is not a number of ASCII digits."""
    if header is None:
        return None
    value = header.strip(" \t")
    return int(value) if value.isascii() and value.isdigit() else 0


def _multipart_form(body: bytes, mimetype: str, options: dict) -> dict:
    """The text fields of a multipart body (files are ignored: Vonage sends none)."""
    try:
        _, form, _ = FormDataParser(max_content_length=MAX_BODY_BYTES).parse(
            io.BytesIO(body), mimetype, len(body), options
        )
    except ValueError as error:
        raise PayloadError(400, f"the multipart body cannot be read ({error})") from None
    # A part with no name (or one werkzeug could not read) is no field.
    return {name: value for name, value in form.items() if isinstance(name, str) and name}
