"""Single-connection SSE across processes: requests relayed, through a Redis ``Broadcast``,
to the process that holds a stream.

Owns ``StreamRelay``. A reservation's token begins with the prefix of the process that
made it (``reservations.PROCESS_PREFIX``); every process with a Redis broadcast listens on
its own channel, ``anyql:streams:<prefix>``. A process that gets a request for a token it
does not hold asks the right one and answers with its reply:

* an operation or a ``DELETE`` goes to the process that made the reservation, which runs
  it on the stream (or passes it on, once, to the process its stream moved to);
* a stream opened at another process than the one that made the reservation *claims* it
  there first (404 unknown, 409 already open), then runs in the process that opened it;
  the maker remembers where it went, and is told when it ends.

Each question has a reply channel of its own, subscribed before the question is
published, and waits at most ``RELAY_TIMEOUT``: a process that does not answer (it exited)
is taken as not holding the token. Imports anyio and the broadcast only through the
``Broadcast`` it is given.
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from .reservations import PROCESS_PREFIX
from .types import HTTPRequest, HTTPResponse, RequestInfo

if TYPE_CHECKING:
    from .broadcast import Broadcast

__all__ = ["RELAY_TIMEOUT", "StreamRelay", "channel_of", "decode_request", "encode_request"]

logger = logging.getLogger("anyql.streams")

#: How long a relayed question waits for its answer.
RELAY_TIMEOUT: Final = 5.0
#: Relayed questions one process has in flight at once.
MAX_QUESTIONS: Final = 256


def channel_of(prefix: str) -> str:
    """The channel the process with ``prefix`` listens on."""
    return f"anyql:streams:{prefix}"


class StreamRelay:
    """This process's end of the relay.

    Args:
        broadcast: a running broadcast shared by every process (Redis).
        answer: how this process answers a relayed question: ``(kind, request, token,
            hops) -> HTTPResponse``.
    """

    def __init__(self, broadcast: Broadcast, answer: Any) -> None:
        self.broadcast = broadcast
        self._answer = answer
        #: Questions in flight at once; past it a request is answered 503 at once.
        self._asking = anyio.CapacityLimiter(MAX_QUESTIONS)
        #: Processes whose silence was logged (once each, so a forged token costs no log).
        self._silent: set[str] = set()

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Answer the questions other processes send here, until cancelled; a failure of
        the subscription (an overflow) is logged and the subscription made again."""
        started = False
        while True:
            try:
                async with self.broadcast.subscribe(channel_of(PROCESS_PREFIX)) as questions:
                    if not started:
                        started = True
                        task_status.started()
                    async with anyio.create_task_group() as tasks:
                        async for question in questions:
                            tasks.start_soon(self._reply, question)
            except Exception:
                logger.exception("the stream relay's subscription failed; subscribing again")
                await anyio.sleep(1)
                continue
            return

    async def ask(
        self, prefix: str, kind: str, request: HTTPRequest, token: str, hops: int = 0
    ) -> HTTPResponse | None:
        """Ask the process with ``prefix``; its answer, or None when none came in time."""
        reply = f"anyql:streams-reply:{PROCESS_PREFIX}:{secrets.token_hex(8)}"
        question = {
            "kind": kind,
            "token": token,
            "hops": hops,
            "reply": reply,
            "request": encode_request(request),
        }
        if self._asking.available_tokens < 1:
            return None
        try:
            async with (
                self._asking,
                self.broadcast.subscribe(reply, timeout=RELAY_TIMEOUT) as replies,
            ):
                await self.broadcast.publish(channel_of(prefix), question)
                async for answer in replies:
                    return _decode_response(answer)
        except Exception as error:  # any failure (no answer in time too): no answer
            if prefix not in self._silent and len(self._silent) < 1000:
                self._silent.add(prefix)
                logger.warning("relaying a stream request to process %s failed: %r", prefix, error)
        return None

    async def tell(self, prefix: str, kind: str, token: str) -> None:
        """Send a notice that needs no answer (a moved stream ended)."""
        try:
            await self.broadcast.publish(channel_of(prefix), {"kind": kind, "token": token})
        except Exception as error:  # a lost notice only delays a release
            logger.warning("telling process %s that a stream ended failed: %r", prefix, error)

    async def _reply(self, question: Any) -> None:
        try:
            kind = question["kind"]
            token = question["token"]
            request = decode_request(question["request"]) if "request" in question else None
            response = await self._answer(kind, request, token, int(question.get("hops", 0)))
            if "reply" in question and response is not None:
                await self.broadcast.publish(question["reply"], _encode_response(response))
        except Exception:
            logger.exception("answering a relayed stream request failed")


def encode_request(request: HTTPRequest) -> dict[str, Any]:
    info = request.info
    return {
        "method": info.method,
        "path": info.path,
        "query_string": info.query_string.decode("latin-1"),
        "headers": [list(pair) for pair in info.headers],
        "client": list(info.client) if info.client is not None else None,
        "scheme": info.scheme,
        "body": base64.b64encode(request.body).decode("ascii"),
    }


def decode_request(data: dict[str, Any]) -> HTTPRequest:
    client = data.get("client")
    info = RequestInfo(
        method=str(data["method"]),
        path=str(data["path"]),
        query_string=str(data["query_string"]).encode("latin-1"),
        headers=tuple((str(k), str(v)) for k, v in data["headers"]),
        client=(str(client[0]), int(client[1])) if client else None,
        scheme=str(data.get("scheme", "http")),
    )
    return HTTPRequest(info, base64.b64decode(data["body"]))


def _encode_response(response: HTTPResponse) -> dict[str, Any]:
    return {
        "status": response.status,
        "headers": [list(pair) for pair in response.headers],
        "body": base64.b64encode(response.body).decode("ascii"),
    }


def _decode_response(data: Any) -> HTTPResponse:
    return HTTPResponse(
        int(data["status"]),
        tuple((str(k), str(v)) for k, v in data["headers"]),
        base64.b64decode(data["body"]),
    )
