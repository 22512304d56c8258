"""A TCP proxy that plays a load balancer: each new connection goes to the port a callable
names at that moment, so a test or benchmark moves new connections from one server to
another while the old ones stay where they are (as a drain needs). anyio only: it runs on
Trio and asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import anyio
import anyio.abc

__all__ = ["tcp_proxy"]

_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@asynccontextmanager
async def tcp_proxy(target: Callable[[], int]) -> AsyncIterator[int]:
    """Listen on a free port of 127.0.0.1 (the value) and relay each connection, both ways,
    to ``127.0.0.1:target()`` read when it arrives; a connection whose upstream refuses is
    closed."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def pump(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except _GONE:
            pass
        finally:
            with suppress(*_GONE):
                await sink.send_eof()

    async def relay(client: anyio.abc.SocketStream) -> None:
        try:
            upstream = await anyio.connect_tcp("127.0.0.1", target())
        except OSError:
            await client.aclose()
            return
        async with client, upstream, anyio.create_task_group() as both:
            both.start_soon(pump, client, upstream)
            both.start_soon(pump, upstream, client)

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, relay)
        yield port
        group.cancel_scope.cancel()
