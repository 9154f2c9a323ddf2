"""Naming rules of topics, patterns and event types, and pattern matching."""

from __future__ import annotations

import pytest

from broadcaster import InvalidEventType, InvalidTopic
from broadcaster._topics import (
    RESERVED_TYPES,
    is_pattern,
    matches_any,
    pattern_regex,
    validate_selector,
    validate_topic,
    validate_type,
)

VALID_TOPICS = [
    ("a", "one-char"),
    ("orders", "word"),
    ("sensors.kitchen.temp", "dotted"),
    ("A-b_c:d.9", "every-allowed-char"),
    ("0lead-digit", "leading-digit"),
    ("x" * 200, "200-chars"),
]

INVALID_TOPICS = [
    ("", "empty", "is empty"),
    ("x" * 201, "201-chars", "201 characters long, the limit is 200"),
    ("has space", "space", "is invalid"),
    ("line\nbreak", "lf-inside", "is invalid"),
    ("orders\n", "trailing-lf", "is invalid"),
    ("orders\r\n", "trailing-crlf", "is invalid"),
    ("orders\r", "trailing-cr", "is invalid"),
    ("\norders", "leading-lf", "is invalid"),
    ("caf\u00e9", "unicode-letter", "is invalid"),
    ("\u0661\u0662", "unicode-digits", "is invalid"),
    (".hidden", "leading-dot", "is invalid"),
    ("-dash", "leading-dash", "is invalid"),
    ("_under", "leading-underscore", "is invalid"),
    (":colon", "leading-colon", "is invalid"),
    ("a/b", "slash", "is invalid"),
    ("a\x00b", "nul", "is invalid"),
    ("a?b", "question-mark", "is invalid"),
    ("a[b]", "brackets", "is invalid"),
    ("sensors.*", "pattern-as-topic", "is invalid"),
]


@pytest.mark.parametrize("topic", [t for t, _ in VALID_TOPICS], ids=[i for _, i in VALID_TOPICS])
def test_validate_topic_accepts(topic):
    assert validate_topic(topic) == topic
    assert validate_selector(topic) == topic


@pytest.mark.parametrize(
    ("topic", "why"), [(t, w) for t, _, w in INVALID_TOPICS], ids=[i for _, i, _ in INVALID_TOPICS]
)
def test_validate_topic_rejects(topic, why):
    with pytest.raises(InvalidTopic) as info:
        validate_topic(topic)
    assert isinstance(info.value, ValueError)
    assert why in str(info.value)
    assert str(info.value).startswith("topic")


VALID_PATTERNS = [
    ("*", "star-alone"),
    ("sensors.*", "trailing-star"),
    ("*.temp", "leading-star"),
    ("a*b*c", "two-stars"),
    ("**", "double-star"),
    ("x" * 199 + "*", "200-chars"),
]

INVALID_PATTERNS = [
    ("sensors *", "space"),
    ("sensors.*\n", "trailing-lf"),
    ("*\r\n", "trailing-crlf"),
    (".*", "leading-dot"),
    ("x" * 200 + "*", "201-chars"),
    ("caf\u00e9.*", "unicode"),
    ("a?*", "question-mark"),
    ("a[bc]*", "brackets"),
    ("a\\*", "backslash"),
]


@pytest.mark.parametrize("pattern", [p for p, _ in VALID_PATTERNS], ids=[i for _, i in VALID_PATTERNS])
def test_validate_selector_accepts_patterns(pattern):
    assert validate_selector(pattern) == pattern
    assert is_pattern(pattern)


@pytest.mark.parametrize("pattern", [p for p, _ in INVALID_PATTERNS], ids=[i for _, i in INVALID_PATTERNS])
def test_validate_selector_rejects_patterns(pattern):
    with pytest.raises(InvalidTopic) as info:
        validate_selector(pattern)
    assert "topic pattern" in str(info.value)


def test_validate_selector_rejects_empty():
    with pytest.raises(InvalidTopic, match="is empty"):
        validate_selector("")


VALID_TYPES = [
    ("message", "default"),
    ("reading", "word"),
    ("order.created", "dotted"),
    ("v2:Update_x-y", "every-allowed-char"),
    ("t" * 64, "64-chars"),
]

INVALID_TYPES = [
    ("", "empty", "is invalid"),
    ("t" * 65, "65-chars", "is invalid"),
    ("two words", "space", "is invalid"),
    ("x\n", "trailing-lf", "is invalid"),
    ("x\r\ndata: injected", "crlf-injection", "is invalid"),
    ("\u00e9v\u00e9nement", "unicode", "is invalid"),
    (".dot", "leading-dot", "is invalid"),
    ("a*", "star", "is invalid"),
    *[(name, f"reserved-{name}", "is reserved") for name in sorted(RESERVED_TYPES)],
]


@pytest.mark.parametrize("event_type", [t for t, _ in VALID_TYPES], ids=[i for _, i in VALID_TYPES])
def test_validate_type_accepts(event_type):
    assert validate_type(event_type) == event_type


@pytest.mark.parametrize(
    ("event_type", "why"), [(t, w) for t, _, w in INVALID_TYPES], ids=[i for _, i, _ in INVALID_TYPES]
)
def test_validate_type_rejects(event_type, why):
    with pytest.raises(InvalidEventType) as info:
        validate_type(event_type)
    assert isinstance(info.value, ValueError)
    assert why in str(info.value)


def test_reserved_types_are_the_control_message_kinds():
    assert RESERVED_TYPES == {"gap", "reset", "live", "fault", "error", "shutdown", "heartbeat"}


MATCHES = [
    ("sensors.*", "sensors.kitchen", True, "one-segment"),
    ("sensors.*", "sensors.kitchen.temp", True, "star-crosses-dots"),
    ("sensors.*", "sensors.", True, "star-matches-empty-run"),
    ("sensors.*", "sensors", False, "prefix-without-dot"),
    ("sensors.*", "other.sensors.kitchen", False, "anchored-at-start"),
    ("*.temp", "sensors.kitchen.temp", True, "leading-star"),
    ("*.temp", "sensors.temperature", False, "anchored-at-end"),
    ("a*c", "ac", True, "empty-run"),
    ("a*c", "abbbc", True, "long-run"),
    ("a*c", "abcd", False, "suffix-after-match"),
    ("*", "anything.at:all-1", True, "star-alone"),
    ("a.b*", "aXb", False, "dot-is-literal"),
    ("x*y*z", "x.y.z", True, "two-stars"),
]


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"), [(p, t, e) for p, t, e, _ in MATCHES], ids=[i for *_, i in MATCHES]
)
def test_pattern_regex_matches_like_redis_glob(pattern, topic, expected):
    assert (pattern_regex(pattern).match(topic) is not None) is expected


def test_matches_any_topics_and_patterns():
    assert matches_any("orders", ["orders"])
    assert not matches_any("orders2", ["orders"])
    assert matches_any("sensors.a.b", ["orders", "sensors.*"])
    assert not matches_any("orders", [])
    assert not is_pattern("orders")
