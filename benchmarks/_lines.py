"""Lines of text from a child process's stdout, for drivers that talk to node clients."""

from __future__ import annotations

from anyio.abc import ByteReceiveStream
from anyio.streams.text import TextReceiveStream

__all__ = ["Lines"]


class Lines:
    """``await lines.next()``: the next line, without its newline (a report may arrive in
    several reads)."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self._text = TextReceiveStream(stream)
        self._buffered = ""

    async def next(self) -> str:
        while "\n" not in self._buffered:
            self._buffered += await self._text.receive()
        line, _, self._buffered = self._buffered.partition("\n")
        return line
