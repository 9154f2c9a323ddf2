"""The auth settings: off by default, checked together, secrets kept out of reprs, every route classified."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from broadcaster import ConfigError, Settings
from broadcaster.http import create_app
from broadcaster.http.gate import Action, GateRequest
from broadcaster.http.policies import policies_for
from broadcaster.http.security import AuthPolicy, CorsPolicy

from ..support.tokens import PREVIOUS_SECRET, SECRET


def test_auth_is_off_by_default_and_the_gate_then_runs_no_policy():
    settings = Settings()
    assert not settings.auth_enabled
    assert policies_for(settings) == []


def test_a_secret_or_a_key_turns_auth_on(tmp_path):
    assert Settings(auth_secret=SECRET).auth_enabled
    assert Settings(auth_public_key=str(tmp_path / "k.pem")).auth_enabled
    kinds = [type(p) for p in policies_for(Settings(auth_secret=SECRET, cors_origins="https://a.example"))]
    assert kinds == [CorsPolicy, AuthPolicy]  # CORS first: a later refusal carries its headers


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth_secret": SECRET, "auth_secret_file": "/x"}, "not both"),
        ({"auth_previous_secret": PREVIOUS_SECRET}, "needs the current secret"),
        ({"anonymous_subscribe": "public.*"}, "anonymous_subscribe needs auth on"),
        ({"auth_audience": "dash"}, "auth_audience needs auth on"),
        ({"auth_issuer": "https://id"}, "auth_issuer needs auth on"),
        ({"auth_query_token": True}, "auth_query_token needs auth on"),
        (
            {"auth_secret": SECRET, "anonymous_subscribe": "bad topic*"},
            "anonymous_subscribe has an invalid entry: topic pattern",
        ),
    ],
    ids=["secret-and-file", "previous-alone", "anonymous", "audience", "issuer", "query", "bad-pattern"],
)
def test_auth_settings_that_would_mislead_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**settings)


def test_secrets_stay_out_of_the_settings_repr():
    settings = Settings(auth_secret=SECRET, auth_previous_secret=PREVIOUS_SECRET)
    assert SECRET not in repr(settings) and PREVIOUS_SECRET not in repr(settings)


def test_switches_and_lists_from_the_environment():
    settings = Settings.from_env(
        {
            "BROADCASTER_AUTH_SECRET": SECRET,
            "BROADCASTER_AUTH_QUERY_TOKEN": "true",
            "BROADCASTER_ANONYMOUS_SUBSCRIBE": "public.*, status",
            "BROADCASTER_METRICS_PUBLIC": "1",
        }
    )
    assert settings.auth_query_token and settings.metrics_public
    assert settings.anonymous_subscribe == ("public.*", "status")


def test_every_route_of_the_app_has_an_action_the_policy_knows():
    """A route the gate cannot classify (Action.OTHER) would be admitted by AuthPolicy without a check."""
    app = create_app(Settings())
    unclassified = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        path = route.path.replace("{topic}", "t")
        for method in route.methods:
            scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": []}
            if GateRequest(scope).action is Action.OTHER:
                unclassified.append(f"{method} {route.path}")
    assert unclassified == []
