"""Suite-wide fixtures: every async test runs on asyncio and on Trio."""

from __future__ import annotations

import pytest
from trio.testing import MockClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Both backends; ``@pytest.mark.autojump`` gives Trio a MockClock that autojumps.

    Under asyncio there is no mock clock, so autojump tests keep their timeouts small.
    """
    backend: str = request.param
    if backend == "trio" and request.node.get_closest_marker("autojump"):
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return (backend, {})
