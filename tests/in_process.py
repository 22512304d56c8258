"""Serving an ASGI app with hypercorn inside the test's own event loop, on its backend."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from hypercorn.config import Config


@asynccontextmanager
async def hypercorn_serving(app: Any, backend: str) -> AsyncIterator[int]:
    """Serve ``app`` with hypercorn on this test's backend; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections queue up before hypercorn accepts: no polling
    port = int(listener.getsockname()[1])
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns and closes it
    config.graceful_timeout = 1.0
    if backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            yield port
        finally:
            stop.set()
