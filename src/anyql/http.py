"""GraphQL over HTTP, sans-IO: a request in, a response or operations out; results in, a
response out.

Owns the rules of the GraphQL-over-HTTP draft as the npm ``graphql-http`` audits check
them: methods, request and response media types, GET and POST parameters, and the status
of each outcome under ``application/json`` and ``application/graphql-response+json``; and
``GraphQLHTTP``, which applies them together with CORS (``cors``) and GraphiQL
(``_graphiql``) to one request. Must not import anyio, graphql, h11 or wsproto (a test
checks it): transports own sizes (413, 431) and timeouts (408); the execution layer owns
documents and their errors; the app owns the path (404) and the context.

Theory of operation, one step in and one step out (h11's shape, without the state: a
``GraphQLHTTP`` is a frozen value shared by every request)::

    received = endpoint.receive(request)         # HTTPResponse | ParsedRequest
    if isinstance(received, HTTPResponse):
        send(received)                           # preflight, GraphiQL page, 405/406/415/400
    else:
        try:                                     # the caller's part: context, execution
            results = []
            for operation in received.operations:
                prepared = prepare(operation)                   # may raise RequestError
                endpoint.check_operation(received, prepared.operation_type)  # HTTPError
                results.append(execute(prepared))
        except (HTTPError, RequestError) as error:
            send(endpoint.respond(received, error))
        else:
            send(endpoint.respond(received, results))

``receive`` answers, in this order: a CORS preflight from an allowed origin (204); a
browser's GET for the GraphiQL page; the preflight-header guard (400); then
``parse_request``: the method (405), ``Accept`` (406), a POST's ``Content-Type`` (415), the
parameters (400; an ``extensions.lastEventId`` that cannot be an event id included).
What passes is a ``ParsedRequest``: the operations and what their answer
depends on. ``respond`` turns the results, or the error that stopped them, into the
response (``result_response``, ``request_error_response``, ``error_response``). Every
answer but the preflight gets the CORS headers for the request's ``Origin``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import unquote_to_bytes

import orjson

from anyql._graphiql import graphiql_response, html_response, wants_graphiql
from anyql._media import (
    EVENT_STREAM,
    GRAPHQL_RESPONSE_JSON,
    JSON,
    MULTIPART_MIXED,
    RESPONSE_TYPES,
    explicit_quality,
    match,
    parse_accept,
    split_media_type,
)
from anyql._resume import read_resume_point
from anyql.cors import CORSPolicy, add_cors_headers, check_preflight_header, preflight_response
from anyql.errors import HTTPError, RequestError
from anyql.types import HTTPRequest, HTTPResponse, OperationRequest, RequestInfo

__all__ = [
    "GRAPHQL_RESPONSE_JSON",
    "JSON",
    "GraphQLHTTP",
    "Outcome",
    "ParsedRequest",
    "StreamKind",
    "check_method_allows",
    "error_response",
    "negotiate_response_type",
    "negotiate_stream",
    "parse_request",
    "request_error_response",
    "result_response",
]

#: Request body media types; anything else (text/plain, forms, multipart) is a CSRF risk.
_BODY_TYPES: Final = frozenset({JSON, GRAPHQL_RESPONSE_JSON})
_UTF8: Final = frozenset({"utf-8", "utf8"})
_ALLOW_GET_POST: Final = (("allow", "GET, POST"),)
_ALLOW_POST: Final = (("allow", "POST"),)
_PARAMETERS: Final = frozenset({"query", "operationName", "variables", "extensions"})

#: What ``GraphQLHTTP.respond`` answers: one executed result per operation, or the error
#: that stopped the request (not executable, or refused at the HTTP level).
Outcome = Sequence[dict[str, Any]] | RequestError | HTTPError

#: How a request may be answered with a stream: ``"sse"`` (``Accept: text/event-stream``,
#: every operation type) or ``"multipart"`` (Apollo's ``multipart/mixed`` with a
#: ``subscriptionSpec``, subscriptions only).
StreamKind = Literal["sse", "multipart"]


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A GraphQL-over-HTTP request that passed every HTTP-level check.

    ``batch`` is True when the body was a JSON list (only with batching on); the answer is
    then a list too. ``response_type`` is ``JSON`` or ``GRAPHQL_RESPONSE_JSON`` (``JSON``
    when ``Accept`` takes only a stream: refusals still need a type). ``stream`` is the
    stream ``Accept`` asks for (``negotiate_stream``), or None. ``method`` decides which
    operation types may run (``check_method_allows``); ``origin`` (the ``Origin`` header,
    or None) which CORS headers the answer gets.
    """

    operations: tuple[OperationRequest, ...]
    batch: bool
    response_type: str
    method: str
    origin: str | None = None
    stream: StreamKind | None = None
    #: False when ``Accept`` takes no JSON type (only the stream).
    json_acceptable: bool = True


# --- the one-step API ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphQLHTTP:
    """One GraphQL-over-HTTP endpoint: ``receive`` a request, ``respond`` with its results.

    A frozen value made from the app's settings; it keeps no per-request state, so one
    can serve any number of requests at once.
    ``batching`` accepts a JSON list of at most ``max_batch`` operations in a POST body.
    ``graphiql``: True answers a browser's GET with the GraphiQL page (its assets from
    ``graphiql_assets_url``, or the pinned CDN when None), False never, a callable
    ``(RequestInfo) -> str`` returns the page's HTML itself; ``graphiql_sse``: our page
    sends subscriptions over SSE instead of a WebSocket. ``cors``: which origins get
    preflights answered and CORS headers (off by default). ``require_preflight_header``
    refuses (400) a GET a page could send cross-site without a preflight.
    """

    batching: bool = False
    max_batch: int = 10
    graphiql: bool | Callable[[RequestInfo], str] = False
    graphiql_assets_url: str | None = None
    graphiql_sse: bool = False
    cors: CORSPolicy = field(default_factory=CORSPolicy)
    require_preflight_header: bool = False

    def receive(self, request: HTTPRequest) -> HTTPResponse | ParsedRequest:
        """Answer ``request`` at once, or hand back the operations it asks to execute.

        Args:
            request: the whole request; its path is the caller's to check (404).

        Returns:
            A response to send as is: a CORS preflight's 204, the GraphiQL page, or a
            refusal (400, 405, 406, 415; see ``parse_request`` and
            ``check_preflight_header``), with the CORS headers but for the preflight. Or
            the ``ParsedRequest`` to execute and pass to ``respond``.
        """
        info = request.info
        headers = info.header_map
        preflight = preflight_response(info.method, headers, self.cors)
        if preflight is not None:
            return preflight
        if self.graphiql and wants_graphiql(info.method, headers):
            return self._with_cors(self._graphiql_page(info), headers.get("origin"))
        try:
            if self.require_preflight_header:
                check_preflight_header(info.method, headers)
            return parse_request(
                info.method,
                info.query_string,
                headers,
                request.body,
                batching=self.batching,
                max_batch=self.max_batch,
            )
        except HTTPError as error:
            refusal = error_response(error, negotiate_response_type(headers))
            return self._with_cors(refusal, headers.get("origin"))

    def check_operation(self, parsed: ParsedRequest, operation_type: str) -> None:
        """Refuse an operation the request's method may not run (``check_method_allows``).

        Call it for each operation once its type is known (after parsing the document),
        before executing it; pass the ``HTTPError`` to ``respond``.

        Args:
            parsed: what ``receive`` returned.
            operation_type: ``"query"``, ``"mutation"`` or ``"subscription"`` (or an enum
                whose ``value`` is one of those).

        Raises:
            HTTPError: 400 for a subscription; 405 for a mutation over GET.
            ValueError: ``operation_type`` is not a GraphQL operation type.
        """
        check_method_allows(parsed.method, operation_type, parsed.stream)

    def respond(self, parsed: ParsedRequest, outcome: Outcome) -> HTTPResponse:
        """The response to a request ``receive`` handed back for execution.

        Args:
            parsed: what ``receive`` returned.
            outcome: one executed result per operation, in order; or the ``RequestError``
                (not executable: 200 or 400 by response type) or ``HTTPError`` (its
                status) that stopped the request.

        Returns:
            The response, with the CORS headers for the request's ``Origin``.

        Raises:
            ValueError: not one result per operation.
        """
        if isinstance(outcome, HTTPError):
            response = error_response(outcome, parsed.response_type)
        elif isinstance(outcome, RequestError):
            response = request_error_response(list(outcome.errors), parsed.response_type)
        else:
            if len(outcome) != len(parsed.operations):
                raise ValueError(f"{len(outcome)} results for {len(parsed.operations)} operations")
            result = list(outcome) if parsed.batch else outcome[0]
            response = result_response(result, parsed.response_type)
        return self._with_cors(response, parsed.origin)

    def _graphiql_page(self, info: RequestInfo) -> HTTPResponse:
        if callable(self.graphiql):
            return html_response(self.graphiql(info))
        return graphiql_response(assets_url=self.graphiql_assets_url, sse=self.graphiql_sse)

    def _with_cors(self, response: HTTPResponse, origin: str | None) -> HTTPResponse:
        return add_cors_headers(response, {} if origin is None else {"origin": origin}, self.cors)


# --- media types ---------------------------------------------------------------------


def negotiate_response_type(headers: Mapping[str, str]) -> str | None:
    """Choose the response media type from ``Accept``.

    No ``Accept`` (or an empty one) means ``application/json``, as the spec asks until
    clients catch up, and so does ``*/*``. Otherwise the acceptable type with the highest
    quality wins; ties go to the more specific range, then to the client's order, then to
    ``application/json``.

    Args:
        headers: request headers, lower-case names.

    Returns:
        ``JSON``, ``GRAPHQL_RESPONSE_JSON``, or None when ``Accept`` excludes both.
    """
    accept = headers.get("accept", "").strip()
    if not accept:
        return JSON
    ranges = parse_accept(accept)
    chosen: str | None = None
    chosen_key: tuple[float, int, int] | None = None
    for media_type in RESPONSE_TYPES:
        key = match(ranges, media_type)
        if key is None or key[0] <= 0:
            continue
        if chosen_key is None or key > chosen_key:
            chosen, chosen_key = media_type, key
    return chosen


def negotiate_stream(headers: Mapping[str, str]) -> StreamKind | None:
    """The stream ``Accept`` asks for, if any.

    ``"sse"`` when ``text/event-stream`` is named (not through a wildcard) with a quality
    at least that of every JSON type; ``"multipart"`` when a ``multipart/mixed`` range
    with a ``subscriptionSpec`` parameter is named with a non-zero quality (Apollo Client
    sends it beside the JSON types: it is then used for subscriptions only).

    Args:
        headers: request headers, lower-case names.
    """
    accept = headers.get("accept", "")
    if "/event-stream" not in accept and MULTIPART_MIXED not in accept.lower():
        return None
    ranges = parse_accept(accept)
    best_json = max((key[0] for t in RESPONSE_TYPES if (key := match(ranges, t))), default=0.0)
    sse = explicit_quality(ranges, EVENT_STREAM)
    if sse > 0 and sse >= best_json:
        return "sse"
    for part in accept.split(","):
        split = split_media_type(part)
        if split is None or split[0] != MULTIPART_MIXED or "subscriptionspec" not in split[1]:
            continue
        quality = split[1].get("q", "1")
        if quality.replace(".", "", 1).isdigit() and float(quality) > 0:
            return "multipart"
    return None


# --- requests ------------------------------------------------------------------------


def parse_request(
    method: str,
    query_string: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    batching: bool = False,
    max_batch: int = 10,
) -> ParsedRequest:
    """Turn the parts of an HTTP request into the operations it asks for.

    GET reads ``query``, ``operationName``, ``variables`` and ``extensions`` (the last two
    JSON-encoded) from the query string and ignores the body; POST reads a JSON body (an
    object, or a list of them when ``batching``) and ignores the query string.

    Args:
        method: the request method, as sent (methods are case-sensitive).
        query_string: the raw query string, without ``?``.
        headers: request headers, lower-case names, repeated ones joined with ", ".
        body: the whole request body (the transport enforces its size).
        batching: accept a JSON list of operations in a POST body.
        max_batch: the most operations one batch may hold.

    Returns:
        The operations, whether they came as a batch, the response media type, the
        method and the ``Origin``.

    Raises:
        HTTPError: 405 (``allow: GET, POST``) for other methods, HEAD included; 406 when
            ``Accept`` excludes both JSON types; 415 for a POST ``Content-Type`` that is
            missing, not JSON or not UTF-8, and for a GET ``Content-Type`` other than
            ``application/json`` (a GET without one is fine); 400 for bad parameters
            (invalid JSON, a missing or non-string ``query``, wrong types, a repeated
            query-string parameter, a batch when batching is off, empty or longer than
            ``max_batch``).
    """
    if method not in ("GET", "POST"):
        raise HTTPError(405, "Method not allowed: use GET or POST", _ALLOW_GET_POST)
    response_type = negotiate_response_type(headers)
    stream = negotiate_stream(headers)
    if response_type is None and stream is None:
        raise HTTPError(
            406,
            f"Not acceptable: accept {GRAPHQL_RESPONSE_JSON} or {JSON}"
            f" ({EVENT_STREAM} or Apollo's multipart/mixed for subscriptions)",
        )
    operations: tuple[OperationRequest, ...]
    if method == "GET":
        _check_get_content_type(headers.get("content-type", ""))
        operations, batch = (_operation_from_query_string(query_string),), False
    else:
        _check_content_type(headers.get("content-type", ""))
        operations, batch = _operations_from_body(body, batching=batching, max_batch=max_batch)
    if batch and stream is not None:
        raise HTTPError(400, "A batch cannot be streamed: send one operation per request")
    return ParsedRequest(
        operations,
        batch,
        response_type or JSON,
        method,
        headers.get("origin"),
        stream,
        response_type is not None,
    )


def _check_get_content_type(value: str) -> None:
    """A GET may carry no ``Content-Type`` or ``application/json``; anything else is refused
    (CSRF: a cross-site page can send a GET with a "simple" type such as ``text/plain``
    without a preflight, as Apollo Server refuses since GHSA-9q82-xgwf-vj6h)."""
    if not value.strip():
        return
    split = split_media_type(value)
    if split is None or split[0] != JSON:
        raise HTTPError(
            415, f"A GET request must not carry a Content-Type other than {JSON}: send none"
        )


def _check_content_type(value: str) -> None:
    if not value.strip():
        raise HTTPError(415, f"Missing Content-Type: send the request as {JSON}")
    split = split_media_type(value)
    if split is None or split[0] not in _BODY_TYPES:
        raise HTTPError(415, f"Unsupported Content-Type: send the request as {JSON}")
    if split[1].get("charset", "utf-8").lower() not in _UTF8:
        raise HTTPError(415, "Unsupported charset: send the request body as UTF-8")


def _operations_from_body(
    body: bytes, *, batching: bool, max_batch: int
) -> tuple[tuple[OperationRequest, ...], bool]:
    if not body.strip():
        raise HTTPError(400, "The request body is empty: send a JSON object with a query")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HTTPError(400, "The request body is not valid JSON") from None
    if isinstance(document, dict):
        return (_operation_from_object(document),), False
    if not isinstance(document, list):
        raise HTTPError(400, "The request body must be a JSON object")
    if not batching:
        raise HTTPError(400, "Batching is not enabled: send one operation as a JSON object")
    if not document:
        raise HTTPError(400, "A batch must hold at least one operation")
    if len(document) > max_batch:
        raise HTTPError(400, f"Too many operations: a batch may hold at most {max_batch}")
    operations = []
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise HTTPError(400, f"Operation {index} of the batch must be a JSON object")
        operations.append(_operation_from_object(item, where=f"Operation {index}: "))
    return tuple(operations), True


def _operation_from_object(document: dict[str, Any], *, where: str = "") -> OperationRequest:
    query = document.get("query")
    if query is None:
        raise HTTPError(400, f"{where}Missing the 'query' parameter")
    if not isinstance(query, str):
        raise HTTPError(400, f"{where}The 'query' parameter must be a string")
    operation_name = document.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise HTTPError(400, f"{where}The 'operationName' parameter must be a string or null")
    extensions = _object_parameter(document.get("extensions"), "extensions", where)
    _check_resume_point(extensions, where)
    return OperationRequest(
        query=query,
        operation_name=operation_name,
        variables=_object_parameter(document.get("variables"), "variables", where),
        extensions=extensions,
    )


def _object_parameter(value: Any, name: str, where: str = "") -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise HTTPError(400, f"{where}The '{name}' parameter must be a JSON object or null")


def _operation_from_query_string(query_string: bytes) -> OperationRequest:
    parameters = _form_parameters(query_string)
    query = parameters.get("query")
    if query is None:
        raise HTTPError(400, "Missing the 'query' parameter")
    extensions = _json_parameter(parameters, "extensions")
    _check_resume_point(extensions)
    return OperationRequest(
        query=query,
        # The spec: an empty operationName means none (a literal "null" is a name).
        operation_name=parameters.get("operationName") or None,
        variables=_json_parameter(parameters, "variables"),
        extensions=extensions,
    )


def _check_resume_point(extensions: dict[str, Any] | None, where: str = "") -> None:
    """Refuse (400) an ``extensions.lastEventId`` that cannot be an event id."""
    try:
        read_resume_point(extensions)
    except ValueError as error:
        raise HTTPError(400, f"{where}{error}") from None


def _form_parameters(query_string: bytes) -> dict[str, str]:
    """Our parameters from an ``application/x-www-form-urlencoded`` query string.

    Unknown parameters are ignored; ours must appear at most once (never read as a list)
    and be UTF-8 once percent-decoded.
    """
    parameters: dict[str, str] = {}
    for pair in query_string.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = _form_decode(raw_name).decode("utf-8", errors="replace")
        if name not in _PARAMETERS:
            continue
        if name in parameters:
            raise HTTPError(400, f"The '{name}' parameter is given more than once")
        try:
            parameters[name] = _form_decode(raw_value).decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, f"The '{name}' parameter is not valid UTF-8") from None
    return parameters


def _form_decode(raw: bytes) -> bytes:
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _json_parameter(parameters: Mapping[str, str], name: str) -> dict[str, Any] | None:
    text = parameters.get(name)
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise HTTPError(400, f"The '{name}' parameter is not valid JSON") from None
    return _object_parameter(value, name)


def check_method_allows(method: str, operation_type: str, stream: StreamKind | None = None) -> None:
    """Refuse an operation its HTTP method (or its ``Accept``) may not run.

    A subscription needs a stream: without one (``Accept`` names neither
    ``text/event-stream`` nor Apollo's multipart type) it gets 400 whatever the method, as
    no other method would help (405 would say one does). A mutation over GET gets 405 with
    ``allow: POST``: GET must not change state (the spec's MUST; also the CSRF guard
    against links and images).

    Args:
        method: the request method.
        operation_type: ``"query"``, ``"mutation"`` or ``"subscription"`` (an enum whose
            ``value`` is one of those, such as graphql-core's ``OperationType``, works too).
        stream: ``ParsedRequest.stream``.

    Raises:
        HTTPError: 400 for a subscription without a stream; 405 for a mutation over
            anything but POST.
        ValueError: ``operation_type`` is none of the three.
    """
    kind = getattr(operation_type, "value", operation_type)
    if kind == "subscription":
        if stream is None:
            raise HTTPError(
                400,
                "Subscriptions over HTTP need a stream: send Accept: text/event-stream"
                " (GraphQL over SSE) or Apollo's multipart/mixed;subscriptionSpec=1.0,"
                " or subscribe over a WebSocket at this URL (graphql-transport-ws)",
            )
        return
    if kind == "mutation":
        if method != "POST":
            raise HTTPError(405, "Mutations need POST: GET must not change state", _ALLOW_POST)
    elif kind != "query":
        raise ValueError(f"unknown operation type {operation_type!r}")


# --- responses -----------------------------------------------------------------------


def _json_response(
    status: int,
    payload: Any,
    response_type: str | None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> HTTPResponse:
    media_type = JSON if response_type is None else response_type
    if media_type not in RESPONSE_TYPES:
        raise ValueError(f"not a GraphQL response media type: {media_type!r}")
    headers = (
        ("content-type", f"{media_type}; charset=utf-8"),
        ("vary", "accept"),
        *((name.lower(), value) for name, value in extra_headers),
    )
    return HTTPResponse(status, headers, orjson.dumps(payload))


def result_response(
    result: dict[str, Any] | list[dict[str, Any]], response_type: str
) -> HTTPResponse:
    """The response to an executed operation (or to a batch of them, as a list).

    200, except a single result with no ``data`` entry under
    ``application/graphql-response+json``: no ``data`` means not executed, and the spec
    requires a 4xx there, so 400.

    Args:
        result: the formatted GraphQL result, or a list of them for a batch.
        response_type: ``ParsedRequest.response_type``.

    Returns:
        The response, ``content-type: <response_type>; charset=utf-8``.

    Raises:
        TypeError: ``result`` holds something orjson cannot encode.
        ValueError: ``response_type`` is not one of the two JSON types.
    """
    status = 200
    if response_type == GRAPHQL_RESPONSE_JSON and isinstance(result, dict):
        status = 200 if "data" in result else 400
    return _json_response(status, result, response_type)


def request_error_response(errors: Sequence[dict[str, Any]], response_type: str) -> HTTPResponse:
    """The response when the document could not be executed at all.

    Syntax, validation and variable-coercion errors: 200 under ``application/json``, 400
    under ``application/graphql-response+json``; the body has ``errors`` and no ``data``.

    Args:
        errors: formatted GraphQL errors.
        response_type: ``ParsedRequest.response_type``.

    Returns:
        The response.

    Raises:
        ValueError: ``response_type`` is not one of the two JSON types.
    """
    status = 400 if response_type == GRAPHQL_RESPONSE_JSON else 200
    return _json_response(status, {"errors": list(errors)}, response_type)


def error_response(error: HTTPError, response_type: str | None = None) -> HTTPResponse:
    """The response to a request refused at the HTTP level.

    The body is ``{"errors": [{"message": error.message}]}``: the message only, never a
    traceback or an exception class. ``error.headers`` (such as ``allow``) are added.

    Args:
        error: the refusal.
        response_type: the negotiated media type, or None for ``application/json``
            (refusals often happen before or instead of negotiation).

    Returns:
        The response, with ``error.status``.

    Raises:
        ValueError: ``response_type`` is not None nor one of the two JSON types.
    """
    body = {"errors": [{"message": error.message}]}
    return _json_response(error.status, body, response_type, error.headers)
