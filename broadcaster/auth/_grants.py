"""Grants and the coverage rule: may a token subscribe to a selector, publish on a topic.

A grant is a topic or a pattern, with the pattern rules of subscriptions (`*` stands
for any run of characters, dots included). A selector (what a stream names: a topic or
a pattern) is **covered** by a set of grants when every topic the selector can match is
matched by some grant:

| grants | selector | covered | why |
| --- | --- | --- | --- |
| `sensors.*` | `sensors.kitchen` | yes | the one topic is matched |
| `sensors.*` | `sensors.kit*` | yes | every `sensors.kit...` is a `sensors....` |
| `sensors.*` | `*` | no | `logs.app` is matched by `*`, not by the grant |
| `sensors.*` | `sens*` | no | `sensible` is matched by `sens*`, not by the grant |

The full table is in docs/security.md (and in tests/auth/test_grants.py, which checks it).
A topic is a selector that matches itself only, so `may_publish` is the same rule.

The check is exact for the union of the grants (no single grant need cover the whole
selector): it looks for a topic that the selector matches and no grant does, walking the
selector's and the grants' pattern automata together over the characters that matter
(those written in the patterns, plus one that stands for every other character). The
walk is bounded (`MAX_STEPS`); past the bound the answer is "not covered", so a grant is
never widened by its size. Topics longer than 200 characters or starting with a
punctuation character cannot exist, but the walk does not know that: such a topic counts
as a reason to refuse, which matters only for contrived grant lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .._topics import is_pattern, matches_any, validate_selector

#: Most pattern steps one coverage check may take before it answers "not covered" (a bound on
#: the CPU a request's selectors can cost: about 50 ms here, whatever the patterns).
MAX_STEPS = 50_000
_OTHER = "\0"  # stands for every character that no pattern names (never a topic character)


def _closure(pattern: str, states: Iterable[int]) -> frozenset[int]:
    """Positions reachable without consuming a character: a `*` may match nothing."""
    reached = set(states)
    stack = list(reached)
    while stack:
        position = stack.pop()
        if position < len(pattern) and pattern[position] == "*" and position + 1 not in reached:
            reached.add(position + 1)
            stack.append(position + 1)
    return frozenset(reached)


class _Automaton:
    """A pattern as an automaton over positions, its steps memoised (the walk revisits the same sets)."""

    __slots__ = ("pattern", "start", "end", "_steps")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.start = _closure(pattern, [0])
        self.end = len(pattern)
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def step(self, states: frozenset[int], char: str) -> frozenset[int]:
        key = (states, char)
        moved = self._steps.get(key)
        if moved is None:
            pattern = self.pattern
            reached = set()
            for position in states:
                if position < self.end:
                    if pattern[position] == "*":
                        reached.add(position)
                    elif pattern[position] == char:
                        reached.add(position + 1)
            moved = self._steps[key] = _closure(pattern, reached)
        return moved


def covers(grants: Sequence[str], selector: str) -> bool:
    """Whether every topic that `selector` matches is matched by one of `grants` (see the module docstring)."""
    if not grants:
        return False
    if selector in grants or "*" in grants:
        return True
    if not is_pattern(selector):
        return matches_any(selector, grants)
    alphabet = sorted({c for p in (selector, *grants) for c in p if c != "*"}) + [_OTHER]
    wanted = _Automaton(selector)
    granted = [_Automaton(g) for g in grants]
    budget = [MAX_STEPS]
    # One grant alone usually covers a selector, and its walk is far shorter than the union's.
    return any(_walk(wanted, [g], alphabet, budget) for g in granted) or (
        len(granted) > 1 and _walk(wanted, granted, alphabet, budget)
    )


def _walk(wanted: _Automaton, granted: list[_Automaton], alphabet: list[str], budget: list[int]) -> bool:
    """Look for a topic `wanted` matches and none of `granted` does; False if found or past the budget."""
    start = (wanted.start, tuple(g.start for g in granted))
    seen = {start}
    frontier = [start]
    while frontier:
        wanted_states, granted_states = frontier.pop()
        for char in alphabet:
            budget[0] -= 1 + len(granted)
            if budget[0] < 0:
                return False
            wanted_next = wanted.step(wanted_states, char)
            if not wanted_next:
                continue
            granted_next = tuple(g.step(s, char) for g, s in zip(granted, granted_states, strict=True))
            if wanted.end in wanted_next and not any(g.end in s for g, s in zip(granted, granted_next, strict=True)):
                return False  # a topic the selector matches and no grant does
            state = (wanted_next, granted_next)
            if state not in seen:
                seen.add(state)
                frontier.append(state)
    return True


@dataclass(frozen=True, slots=True)
class Grants:
    """What a token may do: the `broadcaster` claim (`subscribe`, `publish`, `admin`).

    `admin` may do everything, `/metrics` included. Build from a claim with `from_claim`,
    which raises `ValueError` naming what is malformed.
    """

    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    admin: bool = False

    def adding_subscribe(self, patterns: Sequence[str]) -> Grants:
        """These grants, and also subscribe to `patterns` (what `anonymous_subscribe` gives everyone)."""
        if not patterns:
            return self
        return Grants((*self.subscribe, *(p for p in patterns if p not in self.subscribe)), self.publish, self.admin)

    @classmethod
    def from_claim(cls, claim: object) -> Grants:
        """The grants of a token's `broadcaster` claim; a missing claim (None) grants nothing."""
        if claim is None:
            return cls()
        if not isinstance(claim, dict):
            raise ValueError("the broadcaster claim must be an object")
        unknown = sorted(set(claim) - {"subscribe", "publish", "admin"})
        if unknown:
            raise ValueError(f"the broadcaster claim has unknown keys: {', '.join(unknown)}")
        admin = claim.get("admin", False)
        if not isinstance(admin, bool):
            raise ValueError("broadcaster.admin must be true or false")
        return cls(_patterns(claim, "subscribe"), _patterns(claim, "publish"), admin)

    def may_subscribe(self, selector: str) -> bool:
        """Whether a stream may name `selector` (a topic or a pattern): covered by the subscribe grants."""
        return self.admin or covers(self.subscribe, selector)

    def may_publish(self, topic: str) -> bool:
        return self.admin or covers(self.publish, topic)


def _patterns(claim: dict[str, object], key: str) -> tuple[str, ...]:
    value = claim.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"broadcaster.{key} must be a list of topics and patterns")
    for item in value:
        try:
            validate_selector(item)
        except ValueError as exc:
            raise ValueError(f"broadcaster.{key}: {exc}") from None
    return tuple(value)
