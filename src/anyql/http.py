"""GraphQL over HTTP, sans-IO: request parts in, operations or ``HTTPError`` out; results
in, status, headers and body out; and the GraphiQL page.

Owns the rules of the GraphQL-over-HTTP draft as the npm ``graphql-http`` audits check
them: methods, request and response media types, GET and POST parameters, and the status
of each outcome under ``application/json`` and ``application/graphql-response+json``; and
the CORS and CSRF header rules (``CORSPolicy``, ``preflight_response``,
``add_cors_headers``, ``check_preflight_header``). Must not import anyio or graphql (a
test checks it): transports own sizes (413, 431) and timeouts (408); the execution layer
owns documents and their errors.

Theory of operation: ``parse_request`` checks the method (405), ``Accept`` (406), a POST's
``Content-Type`` (415), then the parameters (400); each refusal is an ``HTTPError`` for
``error_response``. The app prepares each operation, calls ``check_method_allows`` and
answers with ``result_response`` (executed) or ``request_error_response`` (not executable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, NamedTuple
from urllib.parse import unquote_to_bytes

import orjson

from anyql._graphiql import render_graphiql
from anyql.errors import HTTPError
from anyql.types import HTTPResponse, OperationRequest

__all__ = [
    "CORS_ALLOW_HEADERS",
    "GRAPHQL_RESPONSE_JSON",
    "JSON",
    "PREFLIGHT_HEADER",
    "CORSPolicy",
    "ParsedRequest",
    "add_cors_headers",
    "check_method_allows",
    "check_preflight_header",
    "error_response",
    "graphiql_response",
    "negotiate_response_type",
    "parse_request",
    "preflight_response",
    "request_error_response",
    "result_response",
    "wants_graphiql",
]

JSON: Final = "application/json"
GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
HTML: Final = "text/html"

#: Response media types we speak; on a tie in ``Accept``, the earlier one wins.
_RESPONSE_TYPES: Final = (JSON, GRAPHQL_RESPONSE_JSON)
#: Request body media types; anything else (text/plain, forms, multipart) is a CSRF risk.
_BODY_TYPES: Final = frozenset({JSON, GRAPHQL_RESPONSE_JSON})
_UTF8: Final = frozenset({"utf-8", "utf8"})
_ALLOW_GET_POST: Final = (("allow", "GET, POST"),)
_ALLOW_POST: Final = (("allow", "POST"),)
_PARAMETERS: Final = frozenset({"query", "operationName", "variables", "extensions"})
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_QUALITY: Final = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A GraphQL-over-HTTP request that passed every HTTP-level check.

    ``batch`` is True when the body was a JSON list (only with batching on); the answer is
    then a list too. ``response_type`` is ``JSON`` or ``GRAPHQL_RESPONSE_JSON``.
    """

    operations: tuple[OperationRequest, ...]
    batch: bool
    response_type: str


class _MediaRange(NamedTuple):
    media_type: str  # "type/subtype"; either part may be "*"
    quality: float
    position: int


# --- media types ---------------------------------------------------------------------


def _split_media_type(text: str) -> tuple[str, dict[str, str]] | None:
    """``"Application/JSON; charset=UTF-8"`` -> ``("application/json", {"charset": "UTF-8"})``.

    Returns None when the type is not ``token/token``.
    """
    head, *parameter_parts = text.split(";")
    type_, slash, subtype = head.strip().lower().partition("/")
    if not slash or not _TOKEN.fullmatch(type_) or not _TOKEN.fullmatch(subtype):
        return None
    parameters: dict[str, str] = {}
    for part in parameter_parts:
        name, equals, value = part.partition("=")
        name = name.strip().lower()
        if equals and name and name not in parameters:
            parameters[name] = value.strip().strip('"')
    return f"{type_}/{subtype}", parameters


def _parse_accept(value: str) -> list[_MediaRange]:
    """Media ranges of an ``Accept`` value; malformed ranges are skipped."""
    ranges: list[_MediaRange] = []
    for position, part in enumerate(value.split(",")):
        split = _split_media_type(part)
        if split is not None and _QUALITY.fullmatch(quality := split[1].get("q", "1")):
            ranges.append(_MediaRange(split[0], float(quality), position))
    return ranges


def _specificity(media_range: str, media_type: str) -> int:
    """2 for an exact match, 1 for ``type/*``, 0 for ``*/*``, -1 for no match."""
    if media_range == media_type:
        return 2
    if media_range == "*/*":
        return 0
    type_, _, subtype = media_range.partition("/")
    return 1 if subtype == "*" and media_type.startswith(f"{type_}/") else -1


def _match(ranges: Sequence[_MediaRange], media_type: str) -> tuple[float, int, int] | None:
    """(quality, specificity, -position) of the first most specific range for ``media_type``."""
    matches = [(_specificity(r.media_type, media_type), -r.position, r.quality) for r in ranges]
    matches = [match for match in matches if match[0] >= 0]
    if not matches:
        return None
    specificity, negative_position, quality = max(matches, key=lambda match: match[:2])
    return quality, specificity, negative_position


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
    ranges = _parse_accept(accept)
    chosen: str | None = None
    chosen_key: tuple[float, int, int] | None = None
    for media_type in _RESPONSE_TYPES:
        key = _match(ranges, media_type)
        if key is None or key[0] <= 0:
            continue
        if chosen_key is None or key > chosen_key:
            chosen, chosen_key = media_type, key
    return chosen


def _explicit_quality(ranges: Sequence[_MediaRange], media_type: str) -> float:
    """Quality of the first range naming exactly ``media_type`` (not a wildcard), else 0."""
    return next((r.quality for r in ranges if r.media_type == media_type), 0.0)


def wants_graphiql(method: str, headers: Mapping[str, str]) -> bool:
    """True for a browser navigating to the endpoint: the GraphiQL page, not JSON.

    That is a GET whose ``Accept`` names ``text/html`` with a higher quality than any
    range naming a JSON type explicitly (``*/*`` counts for neither).

    Args:
        method: the request method.
        headers: request headers, lower-case names.

    Returns:
        Whether to answer with ``graphiql_response`` (if the app enables GraphiQL).
    """
    if method != "GET":
        return False
    ranges = _parse_accept(headers.get("accept", ""))
    html = _explicit_quality(ranges, HTML)
    json = max(_explicit_quality(ranges, media_type) for media_type in _RESPONSE_TYPES)
    return html > json


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
        The operations, whether they came as a batch, and the response media type.

    Raises:
        HTTPError: 405 (``allow: GET, POST``) for other methods, HEAD included; 406 when
            ``Accept`` excludes both JSON types; 415 for a POST ``Content-Type`` that is
            missing, not JSON or not UTF-8; 400 for bad parameters (invalid JSON, a
            missing or non-string ``query``, wrong types, a repeated query-string
            parameter, a batch when batching is off, empty or longer than ``max_batch``).
    """
    if method not in ("GET", "POST"):
        raise HTTPError(405, "Method not allowed: use GET or POST", _ALLOW_GET_POST)
    response_type = negotiate_response_type(headers)
    if response_type is None:
        raise HTTPError(406, f"Not acceptable: accept {GRAPHQL_RESPONSE_JSON} or {JSON}")
    if method == "GET":
        return ParsedRequest((_operation_from_query_string(query_string),), False, response_type)
    _check_content_type(headers.get("content-type", ""))
    operations, batch = _operations_from_body(body, batching=batching, max_batch=max_batch)
    return ParsedRequest(operations, batch, response_type)


def _check_content_type(value: str) -> None:
    if not value.strip():
        raise HTTPError(415, f"Missing Content-Type: send the request as {JSON}")
    split = _split_media_type(value)
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
    return OperationRequest(
        query=query,
        operation_name=operation_name,
        variables=_object_parameter(document.get("variables"), "variables", where),
        extensions=_object_parameter(document.get("extensions"), "extensions", where),
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
    return OperationRequest(
        query=query,
        # The spec: an empty operationName means none (a literal "null" is a name).
        operation_name=parameters.get("operationName") or None,
        variables=_json_parameter(parameters, "variables"),
        extensions=_json_parameter(parameters, "extensions"),
    )


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


def check_method_allows(method: str, operation_type: str) -> None:
    """Refuse an operation its HTTP method may not run.

    A subscription gets 400 whatever the method: its stream of results is served over
    WebSocket only, so no other method would help (405 would say one does). A mutation
    over GET gets 405 with ``allow: POST``: GET must not change state (the spec's MUST;
    also the CSRF guard against links and images).

    Args:
        method: the request method.
        operation_type: ``"query"``, ``"mutation"`` or ``"subscription"`` (an enum whose
            ``value`` is one of those, such as graphql-core's ``OperationType``, works too).

    Raises:
        HTTPError: 400 for a subscription; 405 for a mutation over anything but POST.
        ValueError: ``operation_type`` is none of the three.
    """
    kind = getattr(operation_type, "value", operation_type)
    if kind == "subscription":
        raise HTTPError(
            400,
            "Subscriptions are not served over HTTP: subscribe over a WebSocket at this URL "
            "(graphql-transport-ws)",
        )
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
    if media_type not in _RESPONSE_TYPES:
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


def graphiql_response(*, assets_url: str | None = None, title: str = "anyql") -> HTTPResponse:
    """The GraphiQL page (see ``anyql._graphiql`` for the assets it loads).

    Args:
        assets_url: base URL of self-hosted assets, or None for the pinned CDN ones.
        title: the page title.

    Returns:
        A 200 ``text/html; charset=utf-8`` response.
    """
    page = render_graphiql(assets_url=assets_url, title=title)
    headers = (("content-type", f"{HTML}; charset=utf-8"), ("vary", "accept"))
    return HTTPResponse(200, headers, page.encode("utf-8"))


# --- CORS and CSRF -------------------------------------------------------------------

#: The request header that proves a browser sent a CORS preflight first (any value).
PREFLIGHT_HEADER: Final = "graphql-require-preflight"
#: Request headers a preflight allows: what GraphQL clients send, and bearer credentials.
CORS_ALLOW_HEADERS: Final = ("accept", "authorization", "content-type", PREFLIGHT_HEADER)
#: Content types a browser sends cross-site without a preflight (Fetch's safelist).
_SIMPLE_TYPES: Final = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)


@dataclass(frozen=True, slots=True)
class CORSPolicy:
    """Which browser origins may call the endpoint cross-origin, and with what.

    ``origins`` are exact origins such as ``"https://app.example.com"`` (compared
    case-insensitively); ``"*"`` admits every origin, and is refused together with
    ``allow_credentials``. No origins means CORS is off: no CORS header is ever sent.
    ``allow_credentials`` lets pages send cookies and read the answers; ``max_age`` is how
    many seconds a browser may cache a preflight's answer; ``allow_headers`` are the request
    headers a preflight allows (lower-cased; ``CORS_ALLOW_HEADERS`` by default).

    Raises:
        ValueError: ``origins`` or ``allow_headers`` is a string, ``origins`` holds ``"*"``
            with ``allow_credentials``, ``max_age`` is negative, or a header name is not an
            HTTP token.
    """

    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 600
    allow_headers: tuple[str, ...] = CORS_ALLOW_HEADERS

    def __post_init__(self) -> None:
        if isinstance(self.origins, str):
            raise ValueError("cors_origins takes a tuple of origins, not one string")
        if isinstance(self.allow_headers, str):
            raise ValueError("cors_allow_headers takes a tuple of header names, not one string")
        for name in self.allow_headers:
            if not isinstance(name, str) or not _TOKEN.fullmatch(name.lower()):
                raise ValueError(f"cors_allow_headers: {name!r} is not a header name")
        lowered = tuple(dict.fromkeys(name.lower() for name in self.allow_headers))
        object.__setattr__(self, "allow_headers", lowered)
        if "*" in self.origins and self.allow_credentials:
            raise ValueError(
                "cors_origins='*' with cors_allow_credentials=True would let any site act "
                "as the logged-in user: list the trusted origins instead"
            )
        if self.max_age < 0:
            raise ValueError(f"cors_max_age must be >= 0, not {self.max_age}")

    @property
    def enabled(self) -> bool:
        """True when at least one origin is allowed."""
        return bool(self.origins)

    def allowed_origin(self, origin: str | None) -> str | None:
        """The ``access-control-allow-origin`` value for a request's ``Origin``.

        Args:
            origin: the ``Origin`` header, or None when the request has none.

        Returns:
            ``origin`` itself when it is listed, ``"*"`` when every origin is allowed
            (never with credentials), None when the origin may not read the answer.
        """
        if origin is None:
            return None
        if "*" in self.origins:
            return "*"
        wanted = origin.lower()
        return origin if any(listed.lower() == wanted for listed in self.origins) else None

    def origin_headers(self, allowed: str) -> tuple[tuple[str, str], ...]:
        """``access-control-allow-origin`` (and ``-allow-credentials``) for ``allowed``."""
        if self.allow_credentials:
            return (
                ("access-control-allow-origin", allowed),
                ("access-control-allow-credentials", "true"),
            )
        return (("access-control-allow-origin", allowed),)


def preflight_response(
    method: str, headers: Mapping[str, str], policy: CORSPolicy
) -> HTTPResponse | None:
    """The answer to a CORS preflight from an allowed origin, or None.

    A preflight is an ``OPTIONS`` request with ``Origin`` and
    ``Access-Control-Request-Method``. From an origin ``policy`` allows, it gets 204 with
    the allowed origin, methods (``GET, POST``), request headers (``policy.allow_headers``),
    ``access-control-max-age`` and ``vary: origin``; the browser itself refuses a method or
    header not listed. Nothing is executed either way.

    Args:
        method: the request method.
        headers: request headers, lower-case names.
        policy: the CORS policy.

    Returns:
        The 204 response, or None for any other request (CORS off, a foreign origin, an
        ``OPTIONS`` that is no preflight): answer it as usual (``OPTIONS`` gets 405).
    """
    if method != "OPTIONS" or "access-control-request-method" not in headers:
        return None
    allowed = policy.allowed_origin(headers.get("origin"))
    if allowed is None:
        return None
    return HTTPResponse(
        204,
        (
            *policy.origin_headers(allowed),
            ("access-control-allow-methods", "GET, POST"),
            *_allow_headers(policy.allow_headers),
            ("access-control-max-age", str(policy.max_age)),
            ("vary", "origin"),
        ),
    )


def _allow_headers(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return (("access-control-allow-headers", ", ".join(names)),) if names else ()


def add_cors_headers(
    response: HTTPResponse, headers: Mapping[str, str], policy: CORSPolicy
) -> HTTPResponse:
    """``response`` with the CORS headers for the request's ``Origin``.

    With CORS on, every response varies by ``Origin`` (``vary`` gains ``origin``, so a
    cache never serves one origin's answer to another); an allowed origin also gets
    ``access-control-allow-origin`` (and ``-allow-credentials``). With CORS off the
    response is returned unchanged.

    Args:
        response: the answer to the request.
        headers: request headers, lower-case names.
        policy: the CORS policy.

    Returns:
        The response with the headers added.
    """
    if not policy.enabled:
        return response
    allowed = policy.allowed_origin(headers.get("origin"))
    added = () if allowed is None else policy.origin_headers(allowed)
    return replace(response, headers=_vary_on_origin((*response.headers, *added)))


def _vary_on_origin(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """``headers`` with ``origin`` added to the first ``vary`` (or a ``vary`` added)."""
    for index, (name, value) in enumerate(headers):
        if name == "vary":
            if "origin" in (part.strip().lower() for part in value.split(",")):
                return headers
            merged = (name, f"{value}, origin")
            return (*headers[:index], merged, *headers[index + 1 :])
    return (*headers, ("vary", "origin"))


def check_preflight_header(method: str, headers: Mapping[str, str]) -> None:
    """Refuse a GET a browser could have sent cross-site without a CORS preflight.

    With the app's ``require_preflight_header`` on, a GET must carry
    ``graphql-require-preflight`` (any value) or a ``Content-Type`` outside Fetch's
    safelist (``text/plain``, ``application/x-www-form-urlencoded``,
    ``multipart/form-data``): a page can set neither without a preflight, so a cross-site
    GET cannot run even a query with the user's cookies. POST needs no such check: it
    already needs a JSON content type (415), which is never safelisted.

    Args:
        method: the request method.
        headers: request headers, lower-case names.

    Raises:
        HTTPError: 400, saying which header to send.
    """
    if method != "GET" or PREFLIGHT_HEADER in headers:
        return
    content_type = headers.get("content-type", "")
    split = _split_media_type(content_type) if content_type.strip() else None
    if content_type.strip() and (split is None or split[0] not in _SIMPLE_TYPES):
        return  # a browser preflights any content type outside the safelist
    raise HTTPError(
        400,
        f"This server requires a '{PREFLIGHT_HEADER}' header (any value) on GET requests, "
        "so that browsers send a CORS preflight first",
    )
