"""The coverage rule (grant x selector), table-driven, and the shape of the `broadcaster` claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broadcaster.auth import Grants, covers

SECURITY_MD = Path(__file__).parent.parent.parent / "docs" / "security.md"

# (grants, selector, covered): every topic the selector can match must be matched by some grant.
COVERAGE = [
    (["sensors.*"], "sensors.kitchen", True),
    (["sensors.*"], "sensors.kit*", True),
    (["sensors.*"], "*", False),
    (["sensors.*"], "sens*", False),
    (["sensors.*"], "sensors.*", True),
    (["sensors.*"], "sensors", False),
    (["sensors.*"], "sensors.*.temp", True),
    (["sensors.*"], "sensors.*.*", True),
    (["sensors.*"], "sensors.**", True),
    (["sensors.**"], "sensors.*", True),
    (["sensors.*"], "other.sensors.kitchen", False),
    (["sensors.*.temp"], "sensors.kitchen.temp", True),
    (["sensors.*.temp"], "sensors.*.temp", True),
    (["sensors.*.temp"], "sensors.*.*.temp", True),
    (["sensors.*.temp"], "sensors.*", False),
    (["sensors.*.temp"], "sensors.kitchen.*", False),
    (["sensors.kitchen.*"], "sensors.*.temp", False),
    (["*.kitchen.*"], "sensors.kitchen.*", True),
    (["*.temp"], "sensors.*.temp", True),
    (["*.temp"], "sensors.*", False),
    (["*kitchen*"], "sensors.kitchen.*", True),
    (["*kitchen*"], "kit*chen", False),
    (["*"], "*", True),
    (["*"], "sensors.kitchen", True),
    (["*"], "anything*", True),
    ([], "sensors.kitchen", False),
    ([], "*", False),
    (["logs.app"], "logs.app", True),
    (["logs.app"], "logs.*", False),
    (["logs.app"], "logs.app*", False),
    (["logs.app"], "logs.ap", False),
    (["logs.*", "sensors.*"], "logs.app", True),
    (["logs.*", "sensors.*"], "*s.*", False),
    (["a*", "b*"], "*", False),
    (["sensors.a*", "sensors.b*"], "sensors.*", False),
    (["sensors.a*", "sensors.b*"], "sensors.b*.x", True),
    (["sensors.*", "sensors.kitchen"], "sensors.kit*", True),
]


@pytest.mark.parametrize(
    ("grants", "selector", "covered"),
    COVERAGE,
    ids=[f"{'+'.join(g) or 'none'}|{s}|{'yes' if c else 'no'}" for g, s, c in COVERAGE],
)
def test_coverage_rule(grants, selector, covered):
    assert covers(grants, selector) is covered


def test_coverage_table_has_at_least_twenty_rows():
    assert len(COVERAGE) >= 20


def test_coverage_is_exact_for_literal_topics_against_brute_force():
    """For topics (no pattern) the rule is plain matching: check it against a regex translation of the grant."""
    grants = ["sensors.*", "*.temp", "logs.app", "a*b*c"]
    topics = ["sensors.x", "sensorsx", "x.temp", "temp", "logs.app", "logs.apps", "abc", "aXbYc", "acb", "a.b.c"]
    for grant in grants:
        expected = re.compile("^" + ".*".join(map(re.escape, grant.split("*"))) + "$")
        for topic in topics:
            assert covers([grant], topic) is bool(expected.match(topic)), (grant, topic)


def test_docs_security_coverage_table_agrees_with_the_rule():
    """docs/security.md's table of examples is checked row by row, so the doc cannot drift from the code."""
    text = SECURITY_MD.read_text()
    block = re.search(r"<!-- coverage-table -->\n(.*?)<!-- /coverage-table -->", text, re.S)
    assert block, "docs/security.md has no coverage-table block"
    rows = [line for line in block[1].splitlines()[2:] if line.startswith("| ")]  # after the header and ---
    assert len(rows) >= 10
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        grants = re.findall(r"`([^`]+)`", cells[0])
        selector = re.findall(r"`([^`]+)`", cells[1])[0]
        assert covers(grants, selector) is (cells[2] == "yes"), row


def test_grants_from_claim_reads_subscribe_publish_admin():
    grants = Grants.from_claim({"subscribe": ["sensors.*", "logs.app"], "publish": ["sensors.kitchen"], "admin": False})
    assert grants == Grants(("sensors.*", "logs.app"), ("sensors.kitchen",), False)
    assert grants.may_subscribe("sensors.kit*") and not grants.may_subscribe("*")
    assert grants.may_publish("sensors.kitchen") and not grants.may_publish("sensors.hall")
    assert Grants.from_claim(None) == Grants()


def test_admin_may_do_everything():
    admin = Grants(admin=True)
    assert admin.may_subscribe("*") and admin.may_publish("anything")


def test_anonymous_patterns_add_to_the_grants():
    grants = Grants(subscribe=("sensors.*",))
    assert not grants.may_subscribe("public.news")
    assert grants.adding_subscribe(["public.*"]).may_subscribe("public.news")
    assert grants.adding_subscribe(["public.*", "sensors.*"]).subscribe == ("sensors.*", "public.*")
    assert Grants().adding_subscribe(["public.*"]).may_subscribe("public.*")
    assert grants.adding_subscribe([]) is grants


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ("sensors.*", "must be an object"),
        ({"subscribe": "sensors.*"}, "broadcaster.subscribe must be a list"),
        ({"publish": [1]}, "broadcaster.publish must be a list"),
        ({"subscribe": ["bad topic*"]}, "broadcaster.subscribe: topic pattern"),
        ({"admin": "yes"}, "broadcaster.admin must be true or false"),
        ({"subscribe": [], "write": ["x"]}, "unknown keys: write"),
    ],
    ids=["not-object", "not-list", "not-strings", "bad-pattern", "admin-not-bool", "unknown-key"],
)
def test_malformed_claims_are_refused_naming_the_problem(claim, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Grants.from_claim(claim)


def test_coverage_check_is_bounded_for_pathological_patterns():
    """A client's selector cannot buy unbounded CPU; a grant that covers alone is found quickly even so."""
    import time

    grants = ["*a*b*c*d*e*f*g*h*i*j*k*l*", "*b*c*d*e*f*g*h*i*j*k*l*m*", "*c*d*e*f*g*h*i*j*k*l*m*n*"]
    started = time.process_time()
    assert covers(grants, "*a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p*q*r*s*t*u*v*w*x*y*z*")  # the first grant covers it
    assert not covers(grants, "*a*b*c*d*e*f*g*h*")  # "abcdefgh" is matched by no grant
    many = [f"*{c}*{c}*{c}*" for c in "abcdefghijklmnopqrstuvwxyz"]
    assert not covers(many, "*" + "*".join("abcdefghijklmnopqrstuvwxyz") + "*")  # bounded: refused, not hung
    assert time.process_time() - started < 2.0
