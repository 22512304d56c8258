"""Autobahn: the cases of the Autobahn test-suite (kosoku runs its case files) against an
echo endpoint on the native transport, on both backends. Zero failed cases.

Sections 1 to 10 run against the server as deployed by default (permessage-deflate off);
about 300 cases, half of the time in the 9.x large-message cases. Sections 12 and 13
(permessage-deflate: five kinds of payload, seven offers of parameters, each echoing 1,000
messages of one size) run against a server started with ``permessage_deflate=True``: the
four smallest sizes of each (48 cases) in the suite, all 216 when ``ANYQL_AUTOBAHN_ALL=1``
(about ten minutes on two cores; last run 216 OK, see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from typing import Any

import anyio
import kosoku
import pytest

from anyql.transports.native import serve
from tests.autobahn.echo import EchoApp

pytestmark = pytest.mark.anyio

#: permessage-deflate cases (see the module docstring).
DEFLATE = ["12.*", "13.*"]
#: The four smallest message sizes (16 B to 1 KiB) of every 12.x and 13.x group.
DEFLATE_QUICK = [
    *(f"12.{group}.{size}" for group in range(1, 6) for size in range(1, 5)),
    *(f"13.{group}.{size}" for group in range(1, 8) for size in range(1, 5)),
]
#: Cases run at once by kosoku (two cores: more only adds contention).
CONCURRENCY = 4


def run_cases(port: int, cases: list[str] | None, excluded: list[str] | None) -> list[Any]:
    """Run Autobahn cases against ``ws://127.0.0.1:port`` in kosoku's own event loop."""
    url = f"ws://127.0.0.1:{port}"
    try:
        return list(
            asyncio.run(
                kosoku.run_fuzzingclient(url, cases, excluded, concurrency=CONCURRENCY)
            )
        )
    except kosoku.FailureError as failure:
        return list(failure.results)


def describe(result: Any) -> str:
    return (
        f"{result.case_id}: {result.behavior.value}/{result.behavior_close.value}:"
        f" {result.result} {result.result_close} expected={result.expected}"
        f" received={str(result.received)[:300]}"
    )


async def run_against_echo(
    cases: list[str] | None, excluded: list[str] | None, *, permessage_deflate: bool
) -> list[Any]:
    """Serve the echo endpoint here, on this test's backend, and run the cases against it."""
    app = EchoApp()
    async with anyio.create_task_group() as tasks:
        serving = partial(serve, app, port=0, permessage_deflate=permessage_deflate)
        port = await tasks.start(serving)
        # kosoku drives the cases from a thread with its own asyncio loop.
        results = await anyio.to_thread.run_sync(run_cases, port, cases, excluded)
        tasks.cancel_scope.cancel()
    assert [describe(result) for result in results if not result.passed] == []
    assert app.sessions >= len(results)
    verdicts = {result.behavior.value for result in results}
    assert verdicts <= {"OK", "NON-STRICT", "INFORMATIONAL"}
    return results


async def test_autobahn_cases_all_pass_against_the_native_echo_endpoint() -> None:
    results = await run_against_echo(None, DEFLATE, permessage_deflate=False)
    assert len(results) >= 290  # the whole selection ran


async def test_autobahn_permessage_deflate_cases_pass_when_it_is_enabled() -> None:
    run_all = os.environ.get("ANYQL_AUTOBAHN_ALL") == "1"
    results = await run_against_echo(
        DEFLATE if run_all else DEFLATE_QUICK, None, permessage_deflate=True
    )
    assert len(results) == (216 if run_all else len(DEFLATE_QUICK))
    assert {result.behavior.value for result in results} == {"OK"}
