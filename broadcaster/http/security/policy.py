"""The access policy: what each request needs, decided once from its scope, before any lane runs.

| request | needs (auth on) |
| --- | --- |
| `GET/HEAD /topics/{topic}/events`, `/events?topic=...` | subscribe grants covering each selector (or anonymous) |
| `GET/HEAD /topics/{topic}/history` | a subscribe grant covering the topic (or `anonymous_subscribe`) |
| `POST /topics/{topic}/events` (every body kind) | a publish grant matching the topic |
| `GET /topics` | nothing; the list shows only what the token may subscribe (`visible`) |
| `GET /metrics` | `admin` (or `metrics_public`) |
| `/healthz`, `/readyz`, `/docs`, `/openapi.json`, `/auth/session`, `/ui` | nothing |
| any other path | `admin` (a route nobody listed here is closed, not open) |

Any method of a listed path that the table does not name needs nothing: no route serves
it, and the app answers 405. With auth off every request is admitted; CORS applies
either way. `AccessPolicy.admit` is the one function the gate calls: it returns an
`Admission` (who, the CORS headers, the token's expiry as the deadline a stream or a
streamed body honours, or a preflight's answer) or raises `ClientError` (401/403, with
the CORS headers so the page can read it) or `InvalidTopic` (422).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.types import Scope

from ..._config import Settings
from ..._topics import validate_selector, validate_topic
from ...auth import Grants, Identity, InvalidToken, Keyring, TokenVerifier
from ..errors import ClientError
from .cors import CorsPolicy, Headers
from .credentials import Credential, find_credential, forbidden, unauthorized

NO_GRANTS = Grants()
_READ = frozenset({"GET", "HEAD"})
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_OPEN_PREFIXES = ("/auth/session", "/ui")


class Need(enum.Enum):
    """What a request needs from the token."""

    NOTHING = "nothing"
    LIST = "list"  # nothing, but the answer depends on the identity (a bad token is still refused)
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    METRICS = "metrics"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Admission:
    """The gate's decision for one admitted request."""

    identity: Identity | None = None
    #: Headers every answer to this request carries (CORS); shared lists, not to be changed.
    headers: Headers = field(default_factory=list)
    #: Unix seconds: a stream ends and a streamed body stops being read here (the token's `exp`).
    expires_at: float | None = None
    #: A preflight's answer (status 204 and these headers): answer it, run no route.
    preflight: Headers | None = None


def requirement(method: str, path: str, query: bytes) -> tuple[Need, list[str]]:
    """What a request needs, and the topics or selectors it names (patterns only on `/events`)."""
    if path == "/events":
        if method in _READ:
            topics = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "topic"]
            for selector in topics:
                validate_selector(selector)
            return Need.SUBSCRIBE, list(dict.fromkeys(topics))
        return Need.NOTHING, []
    if path == "/topics":
        return (Need.LIST if method in _READ else Need.NOTHING), []
    if path.startswith("/topics/"):
        topic, _, rest = path[len("/topics/") :].partition("/")
        if rest in ("events", "history") and method in _READ | {"POST"}:
            validate_topic(topic)
        if topic and rest == "events":
            if method in _READ:
                return Need.SUBSCRIBE, [topic]
            return (Need.PUBLISH if method == "POST" else Need.NOTHING), [topic]
        if topic and rest == "history":
            return (Need.SUBSCRIBE if method in _READ else Need.NOTHING), [topic]
        return Need.ADMIN, []
    if path == "/metrics":
        return (Need.METRICS if method in _READ else Need.NOTHING), []
    if path in _OPEN_PATHS or any(path == p or path.startswith(p + "/") for p in _OPEN_PREFIXES):
        return Need.NOTHING, []
    return Need.ADMIN, []


class AccessPolicy:
    """Access control and CORS for `settings`; raises `ConfigError` at construction for a bad key."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self.verifier = (
            TokenVerifier(Keyring.from_settings(settings), audience=settings.auth_audience, issuer=settings.auth_issuer)
            if self.enabled
            else None
        )
        self.anonymous: tuple[str, ...] = settings.anonymous_subscribe
        self.query_tokens = settings.auth_query_token
        self.metrics_public = settings.metrics_public
        self.cors = CorsPolicy(settings.cors_origins)

    def admit(self, scope: Scope) -> Admission:
        """Decide one request from its ASGI scope (see the module docstring)."""
        origin = _header(scope, b"origin")
        method: str = scope.get("method", "GET")
        cors = self.cors.headers(origin)
        try:
            if method == "OPTIONS" and origin is not None:
                asked = _header(scope, b"access-control-request-method")
                if asked is not None:
                    headers = _header(scope, b"access-control-request-headers") or ""
                    return Admission(headers=cors, preflight=self.cors.preflight(origin, asked, headers))
            if not self.enabled:
                return Admission(headers=cors)
            need, names = requirement(method, scope["path"], scope.get("query_string", b""))
            if need is Need.NOTHING:
                return Admission(headers=cors)
            credential = find_credential(scope, query_tokens=self.query_tokens)
            identity = self.verify(credential)
            if credential is not None and credential.source == "cookie" and method not in _READ:
                self._check_cookie_origin(scope, origin)
            self._authorize(need, names, identity)
        except ClientError as refusal:
            raise _with_headers(refusal, cors) from None
        return Admission(identity, cors, identity.expires_at if identity is not None else None)

    def visible(self, identity: Identity | None, topic: str) -> bool:
        """Whether `/topics` shows `topic` to `identity`: everything with auth off or for `admin`."""
        if not self.enabled:
            return True
        grants = identity.grants if identity is not None else NO_GRANTS
        return grants.may_subscribe(topic, self.anonymous)

    def verify(self, credential: Credential | None) -> Identity | None:
        """The identity of `credential` (None for None); raises `ClientError` (401, invalid_token)."""
        if credential is None:
            return None
        assert self.verifier is not None
        try:
            return self.verifier.verify(credential.token)
        except InvalidToken as exc:
            raise unauthorized(str(exc), "invalid_token", f"the token is invalid: {exc.reason}") from None

    def _authorize(self, need: Need, names: Sequence[str], identity: Identity | None) -> None:
        grants = identity.grants if identity is not None else NO_GRANTS
        if need is Need.SUBSCRIBE:
            for selector in names:
                if not grants.may_subscribe(selector, self.anonymous):
                    self._refuse(identity, "subscribe to", selector)
        elif need is Need.PUBLISH:
            for topic in names:
                if not grants.may_publish(topic):
                    self._refuse(identity, "publish on", topic)
        elif need is Need.METRICS:
            if not (self.metrics_public or grants.admin):
                self._refuse(identity, "read", "/metrics", what="an admin token (or metrics_public)")
        elif need is Need.ADMIN and not grants.admin:
            self._refuse(identity, "use", "this path", what="an admin token")

    def _refuse(self, identity: Identity | None, action: str, name: str, what: str = "") -> None:
        if identity is None:
            needed = what or "a token that grants it"
            raise unauthorized(
                f"a token is needed to {action} {name}: {needed}, sent as Authorization: Bearer <token> "
                "(or the broadcaster_token cookie from POST /auth/session)"
            )
        needed = what or "a grant covering it"
        raise forbidden(f"the token may not {action} {name}: that needs {needed}", f"may not {action} {name}")

    def _check_cookie_origin(self, scope: Scope, origin: str | None) -> None:
        """A cookie rides along on same-site requests from any port or subdomain: a write needs a trusted page."""
        if origin is None or self.cors.allows(origin):
            return
        host = _header(scope, b"host")
        if host is not None and origin == f"{scope.get('scheme', 'http')}://{host}":
            return
        raise ClientError(
            403,
            "forbidden",
            f"a write with the session cookie from the page at {origin[:100]} is refused: that origin is not "
            "this server's nor in cors_origins",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _with_headers(refusal: ClientError, headers: Headers) -> ClientError:
    if not headers:
        return refusal
    merged = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    merged.update(refusal.headers or {})
    return ClientError(refusal.status, refusal.code, refusal.message, merged)
