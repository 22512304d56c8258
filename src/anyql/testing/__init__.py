"""Test client: GraphQL over HTTP, SSE, multipart and WebSocket, against an app in process or
a server by URL.

``TestClient(app)`` serves the app over in-memory byte streams with the native transport
(``anyql.transports.native.serve_connection``, what ``anyql serve`` runs), inside
``app.running()``, so what is tested is what is served; ``TestClient.connect(url)`` speaks
to a running server over TCP with the same API. The client side is plain h11 and wsproto.
Works under Trio and asyncio: anyio's pytest plugin, pytest-trio, ``trio.run`` and
``asyncio.run``::

    async with TestClient(app) as client:
        result = await client.query("{ hello }")                 # HTTP POST
        async with client.websocket(connection_params={"token": "t"}) as socket:
            result = await socket.query("{ hello }")             # over the socket
            async with socket.subscribe("subscription { count(target: 3) }") as results:
                async for result in results:
                    ...
            # leaving the subscription's block sent `complete` (legacy: `stop`)
        # leaving the socket's block waited for the server to end the session: every
        # resolver's cleanup has run
        async with client.subscribe_sse("subscription { count(target: 3) }") as results:
            async for result in results:                         # GraphQL over SSE
                ...
        async with client.subscribe_multipart("subscription { ... }") as results:
            ...                                                  # Apollo's multipart
        async with client.event_stream() as stream:              # SSE, single connection
            async with stream.subscribe("subscription { ... }") as results:
                ...
        # leaving a stream's block closed it and waited for the server to close its end

Modules: ``_client`` (``TestClient``), ``_websocket`` (``WebSocketConnection``,
``OperationResults``), ``_streams`` (subscriptions over HTTP: ``StreamResults``,
``EventStream``, ``StreamInterrupted``, the SSE and multipart parsers), ``_wire``
(in-memory streams, h11/wsproto client steps, ``Response``, errors). Must not import the
app, the session or graphql.
"""

from __future__ import annotations

from .._deprecated import renamed
from ..errors import ClientError as ClientError
from ..errors import ResponseError as ResponseError
from ..errors import WebSocketClosed as WebSocketClosed
from ..errors import WebSocketRejected as WebSocketRejected
from ._client import TestClient as TestClient
from ._streams import EventStream as EventStream
from ._streams import StreamInterrupted as StreamInterrupted
from ._streams import StreamResults as StreamResults
from ._websocket import OperationResults as OperationResults
from ._websocket import WebSocketConnection as WebSocketConnection
from ._wire import Response as Response

__all__ = [
    "ClientError",
    "EventStream",
    "OperationResults",
    "Response",
    "ResponseError",
    "StreamInterrupted",
    "StreamResults",
    "TestClient",
    "WebSocketClosed",
    "WebSocketConnection",
    "WebSocketRejected",
]


#: Old names that still work, with a ``DeprecationWarning``.
__getattr__ = renamed("anyql.testing", {"Subscription": ("OperationResults", OperationResults)})
