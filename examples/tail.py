"""Tailing a subprocess: a subscription that streams a child process's output lines.

Owns the example's fixed commands, ``output_lines`` (a child process as an async generator)
and the app. Imports anyio, anyql and the standard library only.

Clients never pass a command line: ``tail(command:)`` takes an enum, so the only programs
that can run are the fixed scripts below. The child runs through ``anyio.open_process``
inside the subscription's async generator, which therefore owns it: when the client
unsubscribes (``complete`` or ``stop``), disconnects, or the server shuts down, the
operation is cancelled, the generator is closed, and its ``finally`` terminates the child
(SIGTERM, then SIGKILL after a grace), shielded from the cancellation and bounded in time.

    anyql serve examples.tail:app
    subscription { tail(command: TICKER) { number text } }
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from graphql import GraphQLError

from anyql import GraphQL, Schema

logger = logging.getLogger("examples.tail")

#: The commands a client may run, by enum value. Each is a script for ``python -u -c``.
SCRIPTS = {
    "TICKER": (
        "import itertools, time\n"
        "for n in itertools.count():\n"
        "    print(f'tick {n}')\n"
        "    time.sleep(0.1)\n"
    ),
    "COUNTDOWN": (
        "import time\nfor n in (3, 2, 1):\n    print(n)\n    time.sleep(0.1)\nprint('liftoff')\n"
    ),
}
#: Longest output line accepted; a longer one ends the subscription with an error.
MAX_LINE_BYTES = 64 * 1024
#: Time a child gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE = 1.0
#: Time allowed to reap a killed child (well below the server's 5 s cleanup grace).
KILL_GRACE = 1.0

schema = Schema(
    """
    "The fixed programs a client may tail."
    enum Command { TICKER COUNTDOWN }
    type OutputLine { pid: Int!  number: Int!  text: String! }
    type Query { commands: [Command!]! }
    type Subscription {
      "One event per output line; completes when the program exits with status 0."
      tail(command: Command! = TICKER): OutputLine!
    }
    """
)


@schema.field("Query.commands")
def commands(root: Any, info: Any) -> list[str]:
    return list(SCRIPTS)


@schema.field("Subscription.tail")
def tail(root: Any, info: Any, command: str) -> AsyncIterator[dict[str, Any]]:
    return output_lines(command)


async def output_lines(command: str) -> AsyncIterator[dict[str, Any]]:
    """Run one of ``SCRIPTS`` and yield an ``OutputLine`` for each line it prints.

    Args:
        command: a key of ``SCRIPTS``.

    Yields:
        ``{"pid", "number", "text"}``: the child's pid, the line's number from 0, and the
        line without its newline.

    Raises:
        KeyError: ``command`` is not one of ``SCRIPTS``.
        GraphQLError: the child exited with a non-zero status, or printed a line longer
            than ``MAX_LINE_BYTES``.
    """
    argv = [sys.executable, "-u", "-c", SCRIPTS[command]]
    process = await anyio.open_process(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        for number in itertools.count():
            try:
                line = await lines.receive_until(b"\n", MAX_LINE_BYTES)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                break
            except anyio.DelimiterNotFound:
                raise GraphQLError(
                    f"{command} printed a line over {MAX_LINE_BYTES} bytes"
                ) from None
            text = line.decode("utf-8", errors="replace").rstrip("\r")
            yield {"pid": process.pid, "number": number, "text": text}
        status = await process.wait()
        if status != 0:
            raise GraphQLError(f"{command} exited with status {status}")
    finally:
        await stop_process(process)


async def stop_process(process: anyio.abc.Process) -> None:
    """Terminate ``process`` (then kill it) and reap it, shielded and bounded in time.

    Safe to call on a process that already exited.

    Args:
        process: the child to stop.
    """
    with anyio.move_on_after(TERMINATE_GRACE, shield=True):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        await process.wait()
    if process.returncode is None:
        logger.warning("tail: pid %d ignored SIGTERM; killing it", process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with anyio.move_on_after(KILL_GRACE, shield=True):
        await process.aclose()
    logger.info("tail: pid %d stopped (status %s)", process.pid, process.returncode)


app = GraphQL(schema)
