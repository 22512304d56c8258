"""GraphQL subscriptions over plain HTTP, as the app answers them: which requests open a
stream, which reserve one, which run an operation on one, and what each refusal is.

Owns ``HTTPStreams``, the app's part of GraphQL over SSE (both modes of the graphql-sse
protocol) and of Apollo's multipart subscriptions. ``GraphQL.handle_http`` hands it every
request that carries a stream token or uses ``PUT``/``DELETE`` (single connection mode)
and every parsed request whose ``Accept`` asks for a stream (distinct connections mode,
multipart). Refusals decided before a stream is accepted (the method, media types, CSRF,
the context factory's ``HTTPError``, capacity) are ordinary HTTP answers; once a
distinct-mode SSE stream is accepted, request errors arrive on it as ``next`` events, as
the protocol requires. The streams themselves run in ``streams.StreamSession``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs

import anyio
import orjson

from . import http
from ._media import match, parse_accept
from ._resume import LAST_EVENT_ID, check_event_id
from ._stream_relay import RELAY_TIMEOUT, StreamRelay, decode_request, encode_request
from .errors import HTTPError, RequestError
from .protocol.http_stream import Multipart, SSEDistinct, SSESingle, StreamFraming
from .reservations import PROCESS_PREFIX, Reservation, Reservations
from .streams import DRAIN_RETRY_MS, StreamSession
from .types import (
    HTTPRequest,
    HTTPResponse,
    HTTPStream,
    OperationRequest,
    RequestInfo,
    StreamSink,
)

if TYPE_CHECKING:
    from .app import GraphQL

__all__ = ["TOKEN_HEADER", "HTTPStreams", "client_address", "stream_token"]

logger = logging.getLogger("anyql.streams")

TOKEN_HEADER: Final = "x-graphql-event-stream-token"
#: The header a reconnecting ``EventSource`` sends with the last ``id:`` it saw.
LAST_EVENT_ID_HEADER: Final = "last-event-id"
#: Relayed requests in a row a stream's holder may leave unanswered before it is taken
#: as gone (its process exited) and the token as unknown.
HOLDER_GONE_AFTER: Final = 3
_SSE_DISTINCT: Final = SSEDistinct()
_SSE_SINGLE: Final = SSESingle()
_MULTIPART: Final = Multipart()
_UNKNOWN_TOKEN: Final = (
    "Unknown stream token: it expired, its stream ended, or another server process holds it."
    " A reservation lives in the process that made it: route each client's requests to one"
    " process (sticky sessions), or configure a Redis broadcast so processes relay them"
)


def stream_token(info: RequestInfo) -> str | None:
    """The single-connection token of a request: ``X-GraphQL-Event-Stream-Token``, else
    the ``token`` query parameter of a stream request (what ``EventSource`` sends) or of a
    ``DELETE``, else None. A ``token`` parameter of any other request is the app's own (a
    GET query may carry one) and does not make it a stream request."""
    token = info.header(TOKEN_HEADER)
    in_query = token is None and b"token=" in info.query_string
    if in_query and (info.method == "DELETE" or http.negotiate_stream(info.header_map) == "sse"):
        values = parse_qs(info.query_string.decode("latin-1")).get("token")
        token = values[0] if values else None
    return token or None


def client_address(info: RequestInfo, trusted_proxies: int) -> str:
    """The address reservations are counted by: the peer's, or with ``trusted_proxies``
    proxies in front, the address the outermost trusted one saw (``X-Forwarded-For``)."""
    if trusted_proxies > 0:
        forwarded = [a.strip() for a in (info.header_map.get("x-forwarded-for") or "").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= trusted_proxies:
            return forwarded[-trusted_proxies]
    return info.client[0] if info.client is not None else "unknown"


def _refusal(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> HTTPError:
    return HTTPError(status, message, headers)


class HTTPStreams:
    """The app's streams: distinct-mode SSE and multipart, and single-connection SSE.

    Args:
        app: the application (engine, context factory, settings, running server).
    """

    def __init__(self, app: GraphQL) -> None:
        self.app = app
        self.reservations = Reservations(app.limits)
        #: Set while the app runs with a broadcast shared between processes (Redis).
        self.relay: StreamRelay | None = None

    # --- distinct connections mode, multipart ------------------------------------

    async def distinct(
        self, request: HTTPRequest, parsed: http.ParsedRequest
    ) -> HTTPResponse | HTTPStream | None:
        """Answer a parsed request whose ``Accept`` asks for a stream; None: answer it as
        plain GraphQL over HTTP (a query or mutation under Apollo's multipart ``Accept``)."""
        app = self.app
        info = request.info
        sse = parsed.stream == "sse"
        framing = _SSE_DISTINCT if sse else _MULTIPART
        if not sse and parsed.json_acceptable and not _is_subscription(app, parsed):
            return None  # Apollo Client's Accept on a query: plain JSON, as it expects
        refusal = self._draining(info, framing)
        if refusal is not None:
            return refusal
        try:
            operation = parsed.operations[0]
            if sse:
                operation = _resuming_at_header(operation, info)
            context = await app.make_context(info)
            prepared = app.engine.prepare(operation)
            app.http.check_operation(parsed, prepared.operation_type)
        except HTTPError as error:
            return app.http.respond(parsed, error)
        except RequestError as error:
            frames = framing.error("", error.errors) + framing.end()
            return self._stream(info, framing, _ended_with(framing, frames))
        full = self._full(info)
        if full is not None:
            return app.http.respond(parsed, full)
        session = StreamSession(app, framing, info, single_operation=True)
        session.start("", prepared, context)
        return self._stream(info, framing, self._counted(session.run))

    # --- single connection mode ----------------------------------------------------

    async def single(
        self, request: HTTPRequest, token: str | None, hops: int = 0
    ) -> HTTPResponse | HTTPStream:
        """Answer a request of single connection mode: ``PUT`` reserves, a stream request
        with the token opens, ``DELETE`` stops one operation, other requests with the
        token run one. With a relay, a token held by another process is passed on to it
        (``hops`` counts how often this request was already)."""
        info = request.info
        try:
            if info.method == "PUT":
                return await self._reserve(request)
            if token is None:
                raise _refusal(
                    400, f"{info.method} needs a stream token ({TOKEN_HEADER} or ?token=)"
                )
            opening = http.negotiate_stream(info.header_map) == "sse"
            if opening and info.method in ("GET", "POST"):
                return await self._open(request, token)
            relayed = await self._relay_request(request, token, hops)
            if relayed is not None:
                return relayed
            if info.method == "DELETE":
                return self._stop(info, token)
            return await self._operate(request, token)
        except HTTPError as error:
            return self._with_cors(info, http.error_response(error))

    # --- across processes ----------------------------------------------------------

    async def _relay_request(
        self, request: HTTPRequest, token: str, hops: int
    ) -> HTTPResponse | None:
        """The answer of the process holding ``token``'s stream, or None to answer here."""
        relay = self.relay
        if relay is None or hops >= 2:
            return None
        reservation = self.reservations.get(token)
        if reservation is not None and reservation.moved_to is None:
            return None  # held here
        target = (
            reservation.moved_to if reservation is not None else self.reservations.maker_of(token)
        )
        if target is None:
            return None
        answer = await relay.ask(target, "request", request, token, hops + 1)
        if answer is None:
            # No answer in time is not "not held": the holder may only be slow. After
            # ``HOLDER_GONE_AFTER`` in a row, it is taken as gone.
            if reservation is not None:
                reservation.unanswered += 1
                if reservation.unanswered >= HOLDER_GONE_AFTER:
                    self.reservations.release(reservation)
                    raise _refusal(404, _UNKNOWN_TOKEN)
            raise _refusal(
                503,
                "The server process that holds this stream did not answer; try again",
                (("retry-after", "1"),),
            )
        if reservation is not None:
            if answer.status == 404:
                self.reservations.release(reservation)  # its holder no longer has it
            else:
                reservation.unanswered = 0
                self.reservations.touch(reservation)
        return answer

    async def answer_relayed(
        self, kind: str, request: HTTPRequest | None, token: str, hops: int
    ) -> HTTPResponse | None:
        """Answer a question another process relayed here (``_stream_relay``)."""
        reservation = self.reservations.get(token)
        if kind == "released":
            if reservation is not None and reservation.moved_to is not None:
                self.reservations.release(reservation)
            return None
        assert request is not None
        if kind == "claim":
            if reservation is None or reservation.maker is not None:
                return http.error_response(_refusal(404, _UNKNOWN_TOKEN))
            if reservation.opened:
                return http.error_response(
                    _refusal(409, "This reservation's stream is already open")
                )
            reservation.opened = True
            reservation.moved_to = request.info.header("x-anyql-relay-from") or "?"
            self.reservations.moved(reservation)
            # Operations sent here before the stream opened there go with it.
            waiting = [encode_request(r) for r in reservation.session.take_pending_requests()]
            return HTTPResponse(200, (("content-type", "application/json"),), orjson.dumps(waiting))
        answer = await self.single(request, token, hops)
        return answer if isinstance(answer, HTTPResponse) else None

    async def _reserve(self, request: HTTPRequest) -> HTTPResponse:
        app = self.app
        info = request.info
        accept = info.header("accept")
        if accept and not _accepts_text(accept):
            raise _refusal(406, "Not acceptable: a reservation's token is text/plain")
        if self._refuses_streams():
            raise _refusal(503, "Server is shutting down", (("retry-after", "1"),))
        await app.make_context(info)  # authentication: the context factory may refuse
        session = StreamSession(app, _SSE_SINGLE, info, single_operation=False)
        client = client_address(info, app.settings.trusted_proxies)
        reservation = self.reservations.reserve(client, session)
        if reservation is None:
            most = app.limits.max_stream_reservations_per_client
            raise _refusal(
                429,
                "Too many stream reservations from this client"
                f" (max_stream_reservations_per_client={most})",
            )
        response = HTTPResponse(
            201,
            (("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")),
            reservation.token.encode("ascii"),
        )
        return self._with_cors(info, response)

    def _reservation(self, token: str) -> Reservation:
        reservation = self.reservations.get(token)
        if reservation is None:
            raise _refusal(404, _UNKNOWN_TOKEN)
        return reservation

    async def _open(self, request: HTTPRequest, token: str) -> HTTPResponse | HTTPStream:
        info = request.info
        draining = self._draining(info, _SSE_SINGLE)
        if draining is not None:
            return draining
        full = self._full(info)
        if full is not None:
            raise full
        reservation = self.reservations.get(token)
        maker = self.reservations.maker_of(token)
        if reservation is None and maker is not None and self.relay is not None:
            reservation = await self._claim(request, token, maker)
        elif reservation is None:
            raise _refusal(404, _UNKNOWN_TOKEN)
        elif reservation.opened:  # here, or at another process (``moved_to``)
            raise _refusal(409, "This reservation's stream is already open")
        reservation.opened = True
        relay = self.relay

        async def run(sink: StreamSink) -> None:
            try:
                await reservation.session.run(sink)
            finally:
                self.reservations.release(reservation)
                if reservation.maker is not None and relay is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(RELAY_TIMEOUT):
                        await relay.tell(reservation.maker, "released", token)

        return self._stream(info, _SSE_SINGLE, self._counted(run))

    async def _claim(self, request: HTTPRequest, token: str, maker: str) -> Reservation:
        """Take over, from the process that made it, a reservation whose stream opens here."""
        assert self.relay is not None
        info = request.info
        claim = HTTPRequest(
            RequestInfo(info.method, info.path, b"", (("x-anyql-relay-from", PROCESS_PREFIX),)),
        )
        answer = await self.relay.ask(maker, "claim", claim, token)
        if answer is None:
            raise _refusal(404, _UNKNOWN_TOKEN)
        if answer.status != 200:
            raise _refusal(answer.status, _message_of(answer))
        session = StreamSession(self.app, _SSE_SINGLE, info, single_operation=False)
        client = client_address(info, self.app.settings.trusted_proxies)
        reservation = self.reservations.adopt(token, client, session, maker)
        for waiting in orjson.loads(answer.body or b"[]"):
            try:
                await self._operate(decode_request(waiting), token)
            except HTTPError as error:  # refused here as it would have been there
                logger.warning("an operation sent before the stream opened: %s", error.message)
        return reservation

    def _stop(self, info: RequestInfo, token: str) -> HTTPResponse:
        reservation = self._reservation(token)
        values = parse_qs(info.query_string.decode("latin-1")).get("operationId")
        if not values or not values[0]:
            raise _refusal(400, "DELETE needs ?operationId= naming the operation to stop")
        reservation.session.stop(values[0])
        return self._with_cors(info, HTTPResponse(200, (("content-type", "text/plain"),)))

    async def _operate(self, request: HTTPRequest, token: str) -> HTTPResponse:
        app = self.app
        info = request.info
        reservation = self._reservation(token)
        if self._refuses_streams():
            raise _refusal(503, "Server is shutting down", (("retry-after", "1"),))
        received = app.http.receive(request)
        if isinstance(received, HTTPResponse):
            return received
        if received.batch:
            raise _refusal(400, "A batch cannot run on a stream: send one operation per request")
        operation = received.operations[0]
        operation_id = (operation.extensions or {}).get("operationId")
        if not isinstance(operation_id, str) or not operation_id:
            raise _refusal(400, "An operation on a stream needs extensions.operationId (a string)")
        session = reservation.session
        try:
            context = await app.make_context(info)
            prepared = app.engine.prepare(operation)
            check_method = http.check_method_allows
            check_method(received.method, prepared.operation_type, "sse")
        except (HTTPError, RequestError) as error:
            return app.http.respond(received, error)
        if self.reservations.get(token) is not reservation or not session.accepting:
            raise _refusal(404, _UNKNOWN_TOKEN)  # the stream ended meanwhile
        if session.operation_count >= app.limits.max_operations:
            raise _refusal(
                429,
                f"Too many operations on this stream (max_operations={app.limits.max_operations})",
            )
        try:
            session.start(operation_id, prepared, context, request)
        except ValueError:
            raise _refusal(
                409, f"Operation {operation_id!r} is already running on this stream"
            ) from None
        return self._with_cors(info, HTTPResponse(202))

    # --- shared --------------------------------------------------------------------

    def _refuses_streams(self) -> bool:
        handle = self.app.server
        return handle is not None and (handle.draining or handle.shutting_down)

    def _draining(
        self, info: RequestInfo, framing: StreamFraming
    ) -> HTTPResponse | HTTPStream | None:
        """While draining, a new SSE request gets a stream with only a ``retry:`` hint (a 503
        would end a browser's ``EventSource`` for good); a multipart one gets 503."""
        if not self._refuses_streams():
            return None
        if framing is _MULTIPART:
            error = _refusal(503, "Server is shutting down", (("retry-after", "1"),))
            return self._with_cors(info, http.error_response(error))
        hint = framing.interrupted((), random.randint(*DRAIN_RETRY_MS))
        return self._stream(info, framing, _ended_with(framing, hint))

    def _full(self, info: RequestInfo) -> HTTPError | None:
        handle = self.app.server
        limit = self.app.limits.max_connections
        if handle is not None and handle.connections >= limit:
            logger.warning(
                "refused a stream from %s: max_connections (%d) reached", info.peer, limit
            )
            return _refusal(503, "Too many connections", (("retry-after", "1"),))
        return None

    def _counted(
        self, run: Callable[[StreamSink], Awaitable[None]]
    ) -> Callable[[StreamSink], Awaitable[None]]:
        """``run``, counted against ``max_connections`` while it runs."""
        handle = self.app.server

        async def counted(sink: StreamSink) -> None:
            if handle is None:
                await run(sink)
                return
            handle.connections += 1
            try:
                await run(sink)
            finally:
                handle.connections -= 1

        return counted

    def _stream(
        self,
        info: RequestInfo,
        framing: StreamFraming,
        body: Callable[[StreamSink], Awaitable[None]],
    ) -> HTTPStream:
        return HTTPStream(200, (*framing.headers, *self.app.cors_headers(info)), body)

    def _with_cors(self, info: RequestInfo, response: HTTPResponse) -> HTTPResponse:
        cors = self.app.cors_headers(info)
        if not cors:
            return response
        return HTTPResponse(response.status, (*response.headers, *cors), response.body)


def _resuming_at_header(operation: OperationRequest, info: RequestInfo) -> OperationRequest:
    """``operation`` resuming after the request's ``Last-Event-ID`` (what a reconnecting
    ``EventSource`` sends), which wins over ``extensions.lastEventId``; as it is without one.
    Distinct-mode SSE only: on a single-connection stream the id would mix operations.

    Raises:
        HTTPError: 400, the header cannot be an event id (not UTF-8, too long, NUL).
    """
    header = info.header(LAST_EVENT_ID_HEADER)
    if not header:
        return operation
    try:
        # Headers arrive as latin-1 text; an EventSource sends the id it saw as UTF-8.
        header = header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise _refusal(400, "The Last-Event-ID header is not UTF-8 text") from None
    try:
        check_event_id(header, "The Last-Event-ID header")
    except ValueError as error:
        raise _refusal(400, str(error)) from None
    extensions = {**(operation.extensions or {}), LAST_EVENT_ID: header}
    return replace(operation, extensions=extensions)


def _ended_with(framing: StreamFraming, frames: bytes) -> Callable[[StreamSink], Awaitable[None]]:
    """A stream body that sends the opening, then ``frames``, and ends."""

    async def body(sink: StreamSink) -> None:
        await sink.send(framing.opening() + frames)

    return body


def _message_of(response: HTTPResponse) -> str:
    """The first error message of a JSON error answer (a relayed refusal)."""
    try:
        return str(orjson.loads(response.body)["errors"][0]["message"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return "Refused by the process that holds the reservation"


def _is_subscription(app: GraphQL, parsed: http.ParsedRequest) -> bool:
    """Whether the request's one operation is a subscription (False when it cannot even
    be prepared: its errors are then answered as plain GraphQL over HTTP answers them)."""
    try:
        return app.engine.prepare(parsed.operations[0]).operation_type == "subscription"
    except RequestError:
        return False


def _accepts_text(accept: str) -> bool:
    found = match(parse_accept(accept), "text/plain")
    return found is not None and found[0] > 0
