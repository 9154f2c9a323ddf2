"""Backoff with full jitter, and the server's hints: bounded, randomised where shared."""

from __future__ import annotations

import email.utils
import random

import pytest

from broadcaster.client import Retry
from broadcaster.client._retry import MAX_HINT_S, hint_s, retry_after_s


def test_retry_backoff_is_full_jitter_under_an_exponential_bound_and_the_cap():
    random.seed(13)
    policy = Retry(initial_s=0.5, cap_s=4.0)
    for attempt, bound in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (10_000, 4.0)]:
        delays = [policy.backoff_s(attempt) for _ in range(300)]
        assert all(0.0 <= d <= bound for d in delays)
        assert max(delays) > 0.9 * bound and min(delays) < 0.1 * bound  # spread over the whole range


def test_retry_backoff_respects_a_floor():
    assert all(Retry().backoff_s(0, floor_s=3.0) >= 3.0 for _ in range(100))


@pytest.mark.parametrize(
    "options", [{"initial_s": 0}, {"initial_s": 5, "cap_s": 1}, {"give_up_after_s": 0}], ids=["zero", "above-cap", "gu"]
)
def test_retry_refuses_nonsense(options):
    with pytest.raises(ValueError):
        Retry(**options)


def test_retry_after_seconds_get_up_to_a_quarter_of_jitter():
    waits = [retry_after_s("2") for _ in range(300)]
    assert all(w is not None and 2.0 <= w <= 2.5 for w in waits)
    assert len({round(w, 3) for w in waits if w is not None}) > 100  # not all the same


def test_retry_after_http_date_and_bad_values():
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 10, usegmt=True)
    wait = retry_after_s(date, now=now)
    assert wait is not None and 10.0 <= wait <= 12.5
    assert retry_after_s(None) is None
    assert retry_after_s("soon") is None
    assert retry_after_s("999999") == MAX_HINT_S


def test_hint_s_bounds_a_servers_retry_ms():
    assert hint_s(1500) == 1.5
    assert hint_s(None) is None and hint_s(-1) is None
    assert hint_s(10**9) == MAX_HINT_S
