"""The in-memory Broadcast backend: one process, no broker.

Owns ``MemoryBackend``. A publish is handed straight to the local ``Router``, which offers
it to every subscriber's bounded buffer without awaiting, so a publisher never blocks on a
slow subscriber. Imports anyio, the standard library and ``._base`` only.
"""

from __future__ import annotations

from collections.abc import Collection
from types import TracebackType

import anyio.lowlevel

from ._base import Router

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Delivers messages to subscribers of the same ``Broadcast`` object."""

    def __init__(self, router: Router) -> None:
        self._router = router

    @property
    def connected(self) -> bool:
        """Always True: there is no broker to lose."""
        return True

    async def __aenter__(self) -> MemoryBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def publish(self, channel: str, data: bytes) -> None:
        """Deliver the encoded message to local subscribers (never blocks on them).

        Args:
            channel: the channel name.
            data: the JSON-encoded message.
        """
        await anyio.lowlevel.checkpoint()
        self._router.deliver(channel, data)

    def channels_changed(self) -> None:
        """Nothing to do: the router is the whole subscription state."""

    async def wait_subscribed(self, channels: Collection[str]) -> None:
        """A local registration is effective at once.

        Args:
            channels: the channels just registered.
        """
        await anyio.lowlevel.checkpoint()
