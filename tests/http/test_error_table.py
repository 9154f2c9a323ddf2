"""The one error table: each exception type answers with its status, code and Retry-After, on every path."""

from __future__ import annotations

import orjson
import pytest

from broadcaster import _exceptions as ex
from broadcaster.http.errors import ERRORS, RETRY_AFTER_S, ClientError, response_for


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry_after"),
    [
        (ex.InvalidTopic("bad topic 'a b'"), 422, "invalid_topic", False),
        (ex.InvalidEventType("bad type"), 422, "invalid_type", False),
        (ex.InvalidEventData("two lines"), 422, "invalid_data", False),
        (ex.InvalidEventId("not an id"), 400, "invalid_event_id", False),
        (ex.EventTooLarge(10, 5), 413, "payload_too_large", False),
        (ex.BackendUnavailable("connection refused"), 503, "backend_unavailable", True),
        (ex.BackendClosed("closed"), 503, "shutting_down", True),
        (ex.HubClosed("closed"), 503, "shutting_down", True),
        (ex.ConfigError("queue_size must be at least 1"), 500, "server_misconfigured", False),
        (ex.BackendError("some other backend failure"), 500, "internal_error", False),
        (ex.SubscriberEvicted("evicted"), 500, "internal_error", False),
        (ValueError("our bug"), 500, "internal_error", False),
        (ClientError(409, "conflict", "already there", {"X-A": "1"}), 409, "conflict", False),
    ],
)
def test_error_table_answers(exc, status, code, retry_after):
    response = response_for(exc)
    body = orjson.loads(response.body)
    assert response.status_code == status
    assert body["error"]["code"] == code
    assert (response.headers.get("retry-after") == str(RETRY_AFTER_S)) is retry_after
    if status == 500:  # the operator's or our mistake: nothing of it reaches the client
        assert str(exc) not in body["error"]["message"]
    elif not isinstance(exc, ClientError):
        assert str(exc) in body["error"]["message"]


def test_error_table_settings_errors_are_never_a_client_error():
    """A settings error found while serving is the operator's to fix: a 500, never a 4xx."""
    assert ERRORS[ex.ConfigError].status == 500


def test_error_table_message_and_report_for_ingest():
    response = response_for(ex.HubClosed("closed"), message="stopping after line 3", report={"lines": 3})
    assert orjson.loads(response.body) == {
        "error": {"code": "shutting_down", "message": "stopping after line 3"},
        "report": {"lines": 3},
    }
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
