"""Resume after a reconnect with real clients against real servers (rows D08 and D09 of
docs/bad-inputs.md): the npm graphql-ws client with clients/js/resumable.mjs over a
WebSocket the server cuts, and the npm EventSource over an SSE stream the server ends by
restarting (its drain sends a ``retry:``). The source (tests/e2e/app_resume.py) yields
numbered ``anyql.Event``s; every number must arrive exactly once and in order.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.conftest import NODE_DIR
from tests.e2e.servers import SERVER_KINDS, free_port, running_server

pytestmark = pytest.mark.e2e

TARGET = "tests.e2e.app_resume:app"


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next line ``process`` writes to stdout; "" if it ends or ``timeout`` passes."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                return process.stdout.readline()
    return ""


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_D08_the_graphql_ws_client_with_the_helper_resumes_after_the_server_cuts_it(
    kind: str, node: str
) -> None:
    with running_server(kind, TARGET) as server:
        done = subprocess.run(
            [node, str(NODE_DIR / "resume_ws_client.mjs"), server.ws_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    assert "crash" not in seen, seen["crash"]
    resumed = seen["resumed"]
    # cut after 4, reconnected, resumed after "4": no duplicate, no gap
    assert resumed["values"] == list(range(10)), resumed
    assert resumed["ids"] == [str(n) for n in range(10)]
    assert resumed["completed"] is True and "error" not in resumed
    # At least one reconnect. Results still queued when the server closes a connection
    # are dropped with their operation (under hypercorn every frame queues), so a cut may
    # come before the client saw any of 0 to 4; it then starts over from the beginning,
    # as it has nothing to resume after. Whatever it saw, it resumes after.
    assert resumed["connections"] >= 2, resumed
    assert resumed["lastEventId"] == "9"
    # Without the helper the client resends its first payload: it starts over each time.
    plain = seen["plain"]["values"]
    assert len(plain) == 12 and set(plain) <= {0, 1, 2, 3, 4}, plain
    assert plain[0] == 0 and plain.count(0) >= 2


@pytest.mark.parametrize("kind", ["native-trio", "native-asyncio"])
def test_D09_eventsource_resumes_with_last_event_id_after_a_server_restart(
    kind: str, node: str
) -> None:
    port = free_port()
    with running_server(kind, TARGET, port=port) as first:
        client = subprocess.Popen(
            [node, str(NODE_DIR / "resume_sse_client.mjs"), first.http_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert read_line(client, 30) == "held\n"  # events 0 to 4 arrived; the source waits
            first.process.terminate()  # the drain ends the stream with a retry: hint
            first.process.wait(timeout=15)
        except BaseException:
            client.kill()
            client.communicate()
            raise
    with running_server(kind, TARGET, port=port):
        try:
            out, err = client.communicate(timeout=60)
        finally:
            if client.returncode is None:
                client.kill()
                client.communicate()
    assert client.returncode == 0, (out, err)
    seen = json.loads(out)
    assert seen["values"] == list(range(10)), seen
    assert seen["lastEventIds"] == [str(n) for n in range(10)]  # from the id: lines
    assert seen["completed"] is True and "closed" not in seen
    assert seen["errors"] >= 1  # the reconnect(s)
