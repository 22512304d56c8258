"""CORS and the preflight-header CSRF guard, sans-IO: request headers in, headers out.

Owns ``CORSPolicy`` (which browser origins may call the endpoint cross-origin, and with
what), the answer to a preflight (``preflight_response``), the CORS headers of every other
answer (``add_cors_headers``), the guard that refuses a GET a page could send cross-site
without a preflight (``check_preflight_header``) and the default allowed request headers
(``CORS_ALLOW_HEADERS``). Decides nothing about GraphQL: ``http.GraphQLHTTP`` applies these
rules to each request. Imports the standard library, ``_media``, ``errors`` and ``types``
only; never anyio, graphql, h11 or wsproto (a test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from anyql._media import TOKEN, split_media_type
from anyql.errors import HTTPError
from anyql.types import HTTPResponse

__all__ = [
    "CORS_ALLOW_HEADERS",
    "PREFLIGHT_HEADER",
    "CORSPolicy",
    "add_cors_headers",
    "check_preflight_header",
    "preflight_response",
]

#: The request header that proves a browser sent a CORS preflight first (any value).
PREFLIGHT_HEADER: Final = "graphql-require-preflight"
#: Request headers a preflight allows: what GraphQL clients send, and bearer credentials.
CORS_ALLOW_HEADERS: Final = (
    "accept",
    "authorization",
    "content-type",
    PREFLIGHT_HEADER,
    "x-graphql-event-stream-token",
    # What a resuming SSE client sends (docs/subscriptions.md#resuming-after-a-reconnect).
    "last-event-id",
)
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
            if not isinstance(name, str) or not TOKEN.fullmatch(name.lower()):
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
    the allowed origin, methods (``GET, POST, PUT, DELETE``: the last two reserve and
    stop single-connection SSE streams), request headers (``policy.allow_headers``),
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
            ("access-control-allow-methods", "GET, POST, PUT, DELETE"),
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
    split = split_media_type(content_type) if content_type.strip() else None
    if content_type.strip() and (split is None or split[0] not in _SIMPLE_TYPES):
        return  # a browser preflights any content type outside the safelist
    raise HTTPError(
        400,
        f"This server requires a '{PREFLIGHT_HEADER}' header (any value) on GET requests, "
        "so that browsers send a CORS preflight first",
    )
