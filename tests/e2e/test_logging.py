"""`--log-level` governs the project's own log lines too (issue 16: its INFO lines never showed at `info`)."""

from __future__ import annotations

import httpx
import pytest

from ..support.servers import ProcessServer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("level", "info_shown", "debug_shown"),
    [("debug", True, True), ("info", True, False), ("warning", False, False)],
)
def test_logging_log_level_applies_to_broadcaster_loggers(level: str, info_shown: bool, debug_shown: bool):
    server = ProcessServer("--log-level", level)
    server.start()
    process = server.process
    assert process is not None
    try:
        # A stream that opens (a DEBUG line: `subscribe`) and ends by itself.
        with httpx.stream("GET", f"{server.url}/topics/logged/events", params={"max_duration": 0.2}) as response:
            assert response.status_code == 200
            response.read()
    finally:
        server.process = None
        process.terminate()
        output = process.communicate(timeout=15)[0].decode(errors="replace")
    assert process.returncode == 0, output
    assert ("broadcaster._hub: hub closed" in output) is info_shown, output  # INFO, at shutdown
    assert ("broadcaster._hub: subscribe" in output) is debug_shown, output
