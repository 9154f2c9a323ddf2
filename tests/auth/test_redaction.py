"""No token, cookie, access_token value or configured secret survives into a log record."""

from __future__ import annotations

import logging

import pytest

from broadcaster.auth import install_log_redaction, redact

from ..support.tokens import SECRET, hs256

TOKEN = hs256(subscribe=["a"])


@pytest.mark.parametrize(
    "text",
    [
        f"GET /topics/a/events?access_token={TOKEN}&format=sse",
        f"GET /events?topic=a&access_token%3D{TOKEN}",
        f"headers: [(b'authorization', b'Bearer {TOKEN}')]",
        f"Authorization: Bearer {TOKEN}",
        f"cookie: broadcaster_token={TOKEN}; other=1",
        f"{{'cookie': 'broadcaster_token={TOKEN}'}}",
        f"token {TOKEN} failed",
        f"Set-Cookie: broadcaster_token={TOKEN}; Path=/; HttpOnly",
    ],
    ids=["query", "query-encoded", "header-pairs", "header-line", "cookie-line", "cookie-dict", "bare", "set-cookie"],
)
def test_redact_removes_the_token(text):
    clean = redact(text)
    assert TOKEN not in clean
    assert TOKEN.split(".")[1] not in clean  # not even the payload part
    assert "[redacted]" in clean


def test_redact_leaves_ordinary_text_alone():
    text = "stream opened on sensors.kitchen for 127.0.0.1:5000 (12 events)"
    assert redact(text) is text


def test_log_records_are_redacted_in_message_args_and_tracebacks(caplog):
    install_log_redaction([SECRET])
    logger = logging.getLogger("broadcaster.test_redaction")
    with caplog.at_level(logging.INFO, logger="broadcaster.test_redaction"):
        logger.info("request %s with secret %s", f"/x?access_token={TOKEN}", SECRET)
        try:
            raise ValueError(f"bad cookie broadcaster_token={TOKEN}")
        except ValueError:
            logger.exception("failed on %s", "/x")
    text = caplog.text
    assert TOKEN not in text and SECRET not in text
    assert "access_token=[redacted]" in text and "broadcaster_token=[redacted]" in text
    assert "ValueError" in text and "Traceback" in text  # the traceback is kept, scrubbed
    # A record with nothing to scrub keeps its message and arguments for handlers that use them.
    with caplog.at_level(logging.INFO, logger="broadcaster.test_redaction"):
        logger.info("plain %d", 5)
    assert caplog.records[-1].args == (5,)
