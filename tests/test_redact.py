"""`redact_url`: the one helper that hides credentials in URLs (server logs, the CLI, producers)."""

from __future__ import annotations

import pytest

from broadcaster import redact_url
from producers._base import safe_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("rediss://user:p@ss@host:6380/1", "rediss://***@host:6380/1"),
        ("http://user:pw@example.test/path?x=1", "http://***@example.test/path?x=1"),
        ("http://example.test/a@b", "http://example.test/a@b"),  # an @ in the path is no userinfo
        ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?db=0&password=***"),
        ("127.0.0.1:6379", "127.0.0.1:6379"),
    ],
)
def test_redact_url_hides_credentials_and_keeps_the_rest(url: str, shown: str):
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_producers_use_the_same_helper():
    assert safe_url is redact_url
