"""End-to-end fixtures: one real server per kind for the whole session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import SERVER_KINDS, RunningServer, running_server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(request.param) as running:
        yield running


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    if path is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.fail("node and tests/node/node_modules are needed: run ./dev test")
    return path
