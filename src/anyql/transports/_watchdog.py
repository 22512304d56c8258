"""A thread that ends the process when a graceful shutdown overruns its budget.

Owns ``ShutdownWatchdog`` and ``EXIT_SHUTDOWN_OVERRUN``. Imports the standard library only;
``native.run`` arms it on the first SIGINT/SIGTERM when asked to (``anyql serve`` always
does). It lives outside the event loop, so user code that swallows cancellation or shields
a long cleanup cannot keep the process alive: at the deadline it logs that shutdown
overran, dumps every thread's stack (where the code that would not end is), flushes the
log handlers and calls ``os._exit``. A second signal fires it at once.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["EXIT_SHUTDOWN_OVERRUN", "ShutdownWatchdog"]

logger = logging.getLogger("anyql.transports.native")

#: The exit status when the watchdog ended the process (EX_SOFTWARE; not 0, 1, 2 or 130).
EXIT_SHUTDOWN_OVERRUN: Final = 70


class ShutdownWatchdog:
    """Ends the process ``budget`` seconds after ``arm()`` unless ``disarm()`` came first.

    Args:
        budget: seconds the graceful shutdown may take.
        describe: lists the operations still running (field, connection, age), logged
            before the exit; called from the watchdog's thread.
    """

    def __init__(self, budget: float, describe: Callable[[], list[str]] | None = None) -> None:
        self.budget = budget
        self._describe = describe
        self._wake = threading.Event()
        # Reentrant: a signal handler may run while this thread is inside arm().
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._disarmed = False
        self._now = False

    def arm(self) -> None:
        """Start counting (idempotent)."""
        with self._lock:
            if self._thread is None and not self._disarmed:
                self._thread = threading.Thread(
                    target=self._watch, name="anyql shutdown watchdog", daemon=True
                )
                self._thread.start()

    @property
    def armed(self) -> bool:
        """Counting has started."""
        return self._thread is not None

    def on_signal(self) -> None:
        """What a SIGINT or SIGTERM does at once, even while user code blocks the loop: the
        first arms the watchdog, the next fires it (called from the signal handler)."""
        if self.armed:
            self.fire_now()
        else:
            self.arm()

    def fire_now(self) -> None:
        """End the process at once (a second signal), the same way as at the deadline."""
        self._now = True
        self.arm()
        self._wake.set()

    def disarm(self) -> None:
        """Shutdown finished in time: never fire."""
        with self._lock:
            self._disarmed = True
        self._wake.set()

    def _watch(self) -> None:
        self._wake.wait(self.budget)
        with self._lock:
            if self._disarmed and not self._now:
                return
        why = "a second signal" if self._now else f"shutdown overran {self.budget:g} s"
        logger.critical(
            "anyql: %s; ending the process with status %d. Stacks of every thread follow:"
            " the code that would not end is in them",
            why,
            EXIT_SHUTDOWN_OVERRUN,
        )
        for line in _described(self._describe):
            logger.critical("anyql: still running: %s", line)
        _flush_logs()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(EXIT_SHUTDOWN_OVERRUN)


def _described(describe: Callable[[], list[str]] | None) -> list[str]:
    if describe is None:
        return []
    try:
        return describe()
    except Exception:  # the exit must happen whatever the description does
        return ["(the running operations could not be listed)"]


def _flush_logs() -> None:
    for name in (None, "anyql"):
        for handler in logging.getLogger(name).handlers:
            with contextlib.suppress(Exception):
                handler.flush()
