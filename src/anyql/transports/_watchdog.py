"""A thread that ends the process when a graceful shutdown overruns its budget.

Owns ``ShutdownWatchdog`` and ``EXIT_SHUTDOWN_OVERRUN``. Imports the standard library only;
``native.run`` arms it on the first SIGINT/SIGTERM when asked to (``anyql serve`` always
does). It lives outside the event loop, so user code that swallows cancellation or shields
a long cleanup cannot keep the process alive: at the deadline it logs that shutdown
overran, dumps every thread's stack (where the code that would not end is), flushes the
log handlers and calls ``os._exit``. A second signal fires it at once. The report runs in a
thread of its own that gets ``REPORT_SECONDS``: logging that cannot finish (a stderr pipe
nobody reads, its handler's lock held by the blocked loop) cannot hold the exit; nor can
a budget too large for ``select`` (an infinite one): it is waited for in steps.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["EXIT_SHUTDOWN_OVERRUN", "ShutdownWatchdog"]

logger = logging.getLogger("anyql.transports.native")

#: The exit status when the watchdog ended the process (EX_SOFTWARE; not 0, 1, 2 or 130).
EXIT_SHUTDOWN_OVERRUN: Final = 70
#: How long the report before the exit (log lines, stacks) may take before ``os._exit``.
REPORT_SECONDS: Final = 1.0
#: The longest single wait of the watchdog's thread (``select`` overflows near 9.2e9 s).
_MAX_WAIT: Final = 3600.0


class ShutdownWatchdog:
    """Ends the process ``budget`` seconds after ``arm()`` unless ``disarm()`` came first.

    Its thread starts with it and waits on a pipe: every method only writes one byte to
    that pipe (``os.write`` takes no lock), so ``on_signal`` is safe in a signal handler
    that interrupted the main thread anywhere, even inside another of these methods.

    Args:
        budget: seconds the graceful shutdown may take.
        describe: lists the operations still running (field, connection, age), logged
            before the exit; called from the watchdog's thread.
    """

    def __init__(self, budget: float, describe: Callable[[], list[str]] | None = None) -> None:
        self.budget = budget
        self._describe = describe
        #: A signal or ``arm()`` started the count (set without a lock, in a signal handler).
        self.armed = False
        #: The budget the last ``arm()`` asked for (None: ``budget``); read on its byte.
        self._armed_budget: float | None = None
        self._read, self._write = os.pipe()
        self._thread = threading.Thread(
            target=self._watch, name="anyql shutdown watchdog", daemon=True
        )
        self._thread.start()

    def arm(self, budget: float | None = None) -> None:
        """Start counting (idempotent: the first ``arm`` or signal sets the deadline).

        Args:
            budget: seconds from now instead of the watchdog's ``budget`` (a drain the
                app's own code started with times of its own).
        """
        self._armed_budget = budget
        self.armed = True
        self._send(_ARM)

    def on_signal(self) -> None:
        """What a SIGINT or SIGTERM does at once, even while user code blocks the loop: the
        first arms the watchdog, the next fires it (called from the signal handler)."""
        self.armed = True
        self._send(_SIGNAL)

    def fire_now(self) -> None:
        """End the process at once (a second signal), the same way as at the deadline."""
        self._send(_FIRE)

    def disarm(self) -> None:
        """Shutdown finished in time: never fire."""
        self._send(_DISARM)

    def _send(self, command: bytes) -> None:
        with contextlib.suppress(OSError):  # the thread ended and closed the pipe
            os.write(self._write, command)

    def _watch(self) -> None:
        deadline: float | None = None
        budget = self.budget
        signals = 0
        while True:
            timeout = None
            if deadline is not None:  # in steps: an infinite deadline leaves inf here
                timeout = min(max(0.0, deadline - time.monotonic()), _MAX_WAIT)
            ready, _, _ = select.select([self._read], [], [], timeout)
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    self._exit(f"shutdown overran {budget:g} s")
                continue
            for command in os.read(self._read, 64):
                if command == _FIRE[0] or (command == _SIGNAL[0] and signals >= 1):
                    self._exit("a second signal")
                if command == _DISARM[0]:
                    os.close(self._read)
                    os.close(self._write)
                    return
                if command == _SIGNAL[0]:
                    signals += 1
                if deadline is None:  # _ARM or a first _SIGNAL
                    asked = self._armed_budget if command == _ARM[0] else None
                    budget = self.budget if asked is None else asked
                    deadline = time.monotonic() + budget

    def _exit(self, why: str) -> None:
        """Report in a thread of its own for at most ``REPORT_SECONDS``, then exit."""
        with contextlib.suppress(Exception):  # no thread to be had: exit unreported
            reporter = threading.Thread(
                target=self._report, args=(why,), name="anyql shutdown report", daemon=True
            )
            reporter.start()
            reporter.join(REPORT_SECONDS)
        os._exit(EXIT_SHUTDOWN_OVERRUN)

    def _report(self, why: str) -> None:
        logger.critical(
            "anyql: %s; ending the process with status %d. Stacks of every thread follow:"
            " the code that would not end is in them",
            why,
            EXIT_SHUTDOWN_OVERRUN,
        )
        for line in [*_described(self._describe), *_lingering_threads()]:
            logger.critical("anyql: still running: %s", line)
        _flush_logs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()


_ARM: Final = b"a"
_SIGNAL: Final = b"s"
_FIRE: Final = b"f"
_DISARM: Final = b"d"


def _described(describe: Callable[[], list[str]] | None) -> list[str]:
    if describe is None:
        return []
    try:
        return describe()
    except Exception:  # the exit must happen whatever the description does
        return ["(the running operations could not be listed)"]


def _lingering_threads() -> list[str]:
    """The non-daemon threads besides the main one: Python waits for them before it exits
    (asyncio's worker threads, a resolver's ``to_thread`` call abandoned on cancel)."""
    current = threading.current_thread()
    return [
        f"thread {thread.name!r}, which the process waits for before it can exit"
        for thread in threading.enumerate()
        if not thread.daemon and thread is not threading.main_thread() and thread is not current
    ]


def _flush_logs() -> None:
    for name in (None, "anyql"):
        for handler in logging.getLogger(name).handlers:
            with contextlib.suppress(Exception):
                handler.flush()
