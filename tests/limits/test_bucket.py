"""Token buckets: rate, burst, debt, and a per-client map that stays bounded."""

from __future__ import annotations

import pytest

from broadcaster.limits import KeyedBuckets, TokenBucket


def test_bucket_starts_full_and_refuses_past_its_burst():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1, 0.0) == pytest.approx(0.1)  # one token at 10/s


def test_bucket_refills_at_its_rate_up_to_its_burst():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    bucket.take(3, 0.0)
    assert bucket.take(1, 0.05) == pytest.approx(0.05)  # half a token so far
    assert bucket.take(1, 0.1) == 0.0
    assert bucket.full(100.0) and bucket.tokens == 3  # never more than the burst


def test_refused_take_takes_nothing():
    bucket = TokenBucket(rate=1, burst=2, now=0.0)
    assert bucket.take(5, 0.0) == pytest.approx(3.0)
    assert bucket.take(2, 0.0) == 0.0


def test_reserve_goes_into_debt_and_says_how_long_to_wait():
    bucket = TokenBucket(rate=100, burst=10, now=0.0)
    assert bucket.reserve(10, 0.0) == 0.0
    assert bucket.reserve(50, 0.0) == pytest.approx(0.5)  # 50 events at 100/s
    assert bucket.take(1, 0.4) > 0  # still paying the debt
    assert bucket.take(1, 0.52) == 0.0


def test_average_rate_is_kept_over_many_reservations():
    bucket = TokenBucket(rate=200, burst=20, now=0.0)
    now = 0.0
    for _ in range(100):
        now += bucket.reserve(20, now)  # the caller sleeps for what it is told
    assert now == pytest.approx((100 * 20 - 20) / 200)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0.5)])
def test_bucket_refuses_nonsense(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


def test_keyed_buckets_are_per_key():
    buckets = KeyedBuckets(rate=1, burst=1)
    assert buckets.get("a", 0.0).take(1, 0.0) == 0.0
    assert buckets.get("a", 0.0).take(1, 0.0) > 0
    assert buckets.get("b", 0.0).take(1, 0.0) == 0.0


def test_keyed_buckets_drop_full_buckets_when_they_grow():
    buckets = KeyedBuckets(rate=1, burst=1, prune_at=100, max_keys=1000)
    for i in range(100):
        buckets.get(i, 0.0).take(1, 0.0)
    assert len(buckets) == 100
    buckets.get("late", 5.0)  # by now every earlier bucket has refilled: they are dropped
    assert len(buckets) == 1


def test_keyed_buckets_stay_bounded_when_every_client_is_in_debt():
    buckets = KeyedBuckets(rate=1, burst=1, prune_at=50, max_keys=80)
    for i in range(1000):
        buckets.get(i, 0.0).reserve(100, 0.0)
    assert len(buckets) <= 80
    assert 999 in buckets._buckets  # the newest are kept, the oldest dropped
