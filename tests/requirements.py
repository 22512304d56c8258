"""What a test does when something outside Python is missing: skip locally, fail under CI.

A developer without Redis, Chromium, mkdocs or the npm packages gets a skip with the reason;
CI, where everything is installed, must never pass by skipping, so there the same call fails.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

#: ``CI`` is set to ``true`` by GitHub Actions, GitLab and most other CI services.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip the current test with ``reason``, or fail it when running under CI."""
    __tracebackhide__ = True  # report the caller's line, not this one
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this test must run, not skip)")
    pytest.skip(reason)
