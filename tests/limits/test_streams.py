"""Stream counters and storm admission."""

from __future__ import annotations

from broadcaster.limits import StormGate, StreamSlots, default_max_streams, fd_limits, raise_fd_limit


def test_slots_count_in_total_and_per_client_and_release_once():
    slots = StreamSlots(max_total=3, max_per_key=2)
    a1, a2 = slots.acquire("a"), slots.acquire("a")
    assert slots.client_full("a") and not slots.client_full("b") and not slots.full()
    b1 = slots.acquire("b")
    assert slots.full() and slots.total == 3 and slots.clients == 2
    a1.release()
    a1.release()  # idempotent
    assert slots.total == 2 and slots.count("a") == 1 and not slots.full()
    a2.release()
    b1.release()
    assert slots.total == 0 and slots.clients == 0  # no entry left for clients without streams


def test_no_per_client_cap_when_zero():
    slots = StreamSlots(max_total=10, max_per_key=0)
    for _ in range(9):
        slots.acquire("a")
    assert not slots.client_full("a")


def test_storm_admits_the_burst_then_the_rate():
    gate = StormGate(rate=10, burst=5, now=0.0)
    assert [gate.admit(0.0) for _ in range(5)] == [None] * 5
    assert gate.admit(0.0) is not None
    assert gate.admit(0.1) is None  # one more after 1/rate s
    assert gate.refused == 1


def test_storm_retry_after_spreads_refused_clients_over_the_backlog():
    gate = StormGate(rate=100, burst=100, now=0.0)
    hints = [gate.admit(0.0) for _ in range(2100)]
    refused = [h for h in hints if h is not None]
    assert len(refused) == 2000
    # 2000 refused at 100/s need 20 s: the hints spread over 1..21 s, not all the same second.
    assert min(refused) == 1 and 15 <= max(refused) <= 21
    assert len(set(refused)) >= 15
    early, late = refused[:100], refused[-100:]
    assert max(early) <= 2 and sum(late) / len(late) > 5  # the later ones in the storm wait longer


def test_storm_retry_after_is_bounded():
    gate = StormGate(rate=1, burst=1, now=0.0, uniform=lambda low, high: high)
    hints = [gate.admit(0.0) for _ in range(500)]
    assert max(h for h in hints if h is not None) == 60


def test_default_max_streams_leaves_room():
    assert default_max_streams(1024) == 1024 - 128
    assert default_max_streams(100_000) == 90_000
    assert default_max_streams(50) == 1


def test_raise_fd_limit_reaches_the_hard_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
        before, now = raise_fd_limit()
        assert before == min(512, hard) and now == fd_limits()[1] == fd_limits()[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_identity_key_reads_a_token_subject_and_falls_back_to_none():
    from dataclasses import dataclass

    from broadcaster.http.limits.admission import client_key, identity_key

    @dataclass
    class Identity:
        subject: str | None

    assert identity_key(Identity("alice")) == "alice"
    assert identity_key(Identity(None)) is None  # anonymous: the address counts
    assert identity_key({"sub": "bob"}) == "bob" and identity_key("carol") == "carol" and identity_key(None) is None
    scope = {"client": ("10.0.0.1", 5555)}
    assert client_key(scope, identity_key(Identity("alice"))) == "sub:alice"
    assert client_key(scope, identity_key(Identity(None))) == "addr:10.0.0.1"
