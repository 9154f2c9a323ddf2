"""schemathesis against /openapi.json: no 5xx, and every answer as documented (status, content type, body schema).

Stream operations get `max_duration` so they end; a canary subscriber must get every event published meanwhile.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from broadcaster import Settings
from broadcaster.http import create_app

STREAM_PATHS = ("/topics/{topic}/events", "/events")


SERVER_FLAGS = ("--heartbeat-s", "0.2")  # the monitor then ends streams at max_duration within 0.1 s


def _schema() -> Any:
    """The schema the server serves, loaded from the app itself (the server in the fixture serves the same)."""
    return schemathesis.openapi.from_dict(create_app(Settings()).openapi())


SCHEMA = _schema()
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}


def test_the_served_schema_is_the_one_tested(module_server):
    assert httpx.get(module_server.url + "/openapi.json").json() == SCHEMA.raw_schema


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_every_operation_answers_as_documented(label, module_server, module_canary):
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        if case.method == "GET" and case.path in STREAM_PATHS:
            case.query = {**(case.query or {}), "max_duration": 0.1}
            case.query.pop("max_events", None)  # would wait for events that never come
        # A request body typed `string` cannot say "one JSON value per line": valid by the schema is not
        # valid NDJSON, so for the publish operation the "valid data is accepted" check cannot hold.
        # The history's `after` must be an id *of this topic* (else 400, naming it): a relation between
        # two parameters that JSON Schema cannot state, so a schema-valid id of another topic is refused.
        excluded = (
            [schemathesis.checks.positive_data_acceptance]
            if case.method == "POST" or case.path == "/topics/{topic}/history"
            else []
        )
        case.call_and_validate(base_url=module_server.url, timeout=10, excluded_checks=excluded)

    run()
    module_canary()
