"""The gate's access policies: CORS first, then identity and grants (see `http/gate.py` for the interface).

What each request needs with auth on, by the gate's `Action`:

| action | needs |
| --- | --- |
| `SUBSCRIBE` (single-, multi-topic and pattern streams, SSE and NDJSON) | subscribe grants covering every selector |
| `HISTORY` | a subscribe grant covering the topic |
| `PUBLISH` (single JSON, streamed NDJSON/text, multipart) | a publish grant matching the topic |
| `TOPICS` | nothing; the handler shows only what the identity may subscribe |
| `METRICS` | `admin` (or `metrics_public`) |
| `HEALTH`, `DOCS`, `STATIC` | nothing |
| `AUTH`: `POST /auth/session` | a valid token as `Authorization: Bearer` (it becomes the cookie) |
| `OTHER` | nothing: no route serves it (404 or 405); a test checks that every route has an action |

A request without a token is `ANONYMOUS`, with the subscribe grants of
`anonymous_subscribe`; a token's grants get those too. A token that was sent and
fails is refused (401) even where no token is needed, except on `HEALTH`, `DOCS` and
`STATIC`, which never read it. The admitted decision carries the identity (the FastAPI
lane's handlers read it with `entry.decision_of`) and, for a token, a `Deadline` at its
`exp`: a stream then ends with `TOKEN_EXPIRED`, a streamed POST stops reading.
"""

from __future__ import annotations

from starlette.responses import Response

from ..._config import Settings
from ..._event import Control
from ..._topics import validate_selector, validate_topic
from ...auth import ANONYMOUS, Identity, InvalidToken, Keyring, TokenVerifier
from ..errors import error_kind
from ..gate import Action, Deadline, Decision, GateRequest, Refused
from .cors import Cors
from .credentials import Credential, find_credential, forbidden, unauthorized

#: The stream's fault control message (issue 16 renames it; this is the one place that names it here).
FAULT_CONTROL = "fault"
TOKEN_EXPIRED_REASON = "token_expired"
TOKEN_EXPIRED = Control(FAULT_CONTROL, {"reason": TOKEN_EXPIRED_REASON})
SESSION_PATH = "/auth/session"

_OPEN = frozenset({Action.HEALTH, Action.DOCS, Action.STATIC})
_READ = frozenset({"GET", "HEAD"})


class CorsPolicy:
    """CORS headers on every answer to an allowed origin, and preflights answered in the gate."""

    def __init__(self, cors: Cors) -> None:
        self.cors = cors

    async def admit(self, request: GateRequest, decision: Decision) -> Decision:
        headers = request.headers
        origin = headers.get("origin")
        if request.method == "OPTIONS" and origin is not None:
            asked = headers.get("access-control-request-method")
            if asked is not None:
                allowed = self.cors.preflight(origin, asked, headers.get("access-control-request-headers", ""))
                return decision.adding(response=Response(status_code=204, headers=dict(allowed)))
        extra = self.cors.headers(origin)
        return decision.adding(headers=extra) if extra else decision


class AuthPolicy:
    """Who is asking (the token, verified once) and whether the grants cover what is asked.

    Raises `ConfigError` at construction for a bad key.
    """

    def __init__(self, settings: Settings, cors: Cors) -> None:
        self.verifier = TokenVerifier(
            Keyring.from_settings(settings), audience=settings.auth_audience, issuer=settings.auth_issuer
        )
        self.anonymous = ANONYMOUS.adding_subscribe(settings.anonymous_subscribe)
        self.patterns = settings.anonymous_subscribe
        self.query_tokens = settings.auth_query_token
        self.metrics_public = settings.metrics_public
        self.max_selectors = settings.max_topics_per_stream
        self.cors = cors

    async def admit(self, request: GateRequest, decision: Decision) -> Decision:
        action = request.action
        if action in _OPEN:
            return decision
        if action is Action.AUTH:
            if request.path == SESSION_PATH and request.method == "POST":
                return self._session(request, decision)
            return decision  # DELETE /auth/session clears a cookie: it needs nothing
        if action is Action.OTHER:
            return decision
        credential = find_credential(request.scope, query_tokens=self.query_tokens)
        identity = self.identify(credential)
        if credential is not None and credential.source == "cookie" and request.method not in _READ:
            self._check_cookie_origin(request)
        self._authorize(request, identity)
        if identity.expires_at is None:
            return decision.adding(identity=identity)
        return decision.adding(identity=identity, deadline=Deadline(identity.expires_at, TOKEN_EXPIRED))

    def identify(self, credential: Credential | None) -> Identity:
        """The identity of `credential` (`anonymous` for None); raises `Refused` (401, invalid_token)."""
        if credential is None:
            return self.anonymous
        try:
            identity = self.verifier.verify(credential.token)
        except InvalidToken as exc:
            raise unauthorized(str(exc), "invalid_token", f"the token is invalid: {exc.reason}") from None
        return identity.adding_subscribe(self.patterns)

    def _session(self, request: GateRequest, decision: Decision) -> Decision:
        credential = find_credential(request.scope, query_tokens=False)
        if credential is None or credential.source != "bearer":
            raise unauthorized("send the token to keep as a cookie in the header Authorization: Bearer <token>")
        return decision.adding(identity=self.identify(credential))

    def _authorize(self, request: GateRequest, identity: Identity) -> None:
        action, grants = request.action, identity.grants
        if action is Action.SUBSCRIBE or action is Action.HISTORY or action is Action.ARCHIVE:
            # Reading a topic's archive is reading the topic: the same subscribe grant.
            patterns = request.path == "/events"
            if len(request.topics) > self.max_selectors:  # before any coverage walk: bounded work per request
                message = f"a stream may name at most {self.max_selectors} topics, got {len(request.topics)}"
                raise Refused(422, "invalid_parameter", message)
            for selector in request.topics:
                _validate(selector, patterns)
                if not grants.may_subscribe(selector):
                    self._refuse(identity, "subscribe to", selector)
        elif action is Action.PUBLISH:
            for topic in request.topics:
                _validate(topic, False)
                if not grants.may_publish(topic):
                    self._refuse(identity, "publish on", topic)
        elif action is Action.METRICS and not (self.metrics_public or grants.admin):
            self._refuse(identity, "read", "/metrics", needs="an admin token (or the setting metrics_public)")

    @staticmethod
    def _refuse(identity: Identity, action: str, name: str, needs: str = "") -> None:
        if identity.expires_at is None:  # no token was sent
            raise unauthorized(
                f"a token is needed to {action} {name}: send {needs or 'a token that grants it'} as "
                "Authorization: Bearer <token> (or the broadcaster_token cookie from POST /auth/session)"
            )
        needs = needs or "a grant that covers it"
        raise forbidden(f"the token may not {action} {name}: that needs {needs}", f"may not {action} {name}")

    def _check_cookie_origin(self, request: GateRequest) -> None:
        """The cookie rides along from every page of the same site (any port, any subdomain): a write
        with it must come from this server's own origin or from one in `cors_origins`."""
        origin = request.headers.get("origin")
        if origin is None or self.cors.allows(origin):
            return
        host = request.headers.get("host")
        if host is not None and origin == f"{request.scope.get('scheme', 'http')}://{host}":
            return
        message = (
            f"a write with the session cookie from the page at {origin[:100]} is refused: that origin is neither "
            "this server's nor in cors_origins"
        )
        raise Refused(403, "forbidden", message)


def _validate(name: str, patterns: bool) -> None:
    """Names go into refusals and headers: refuse an invalid one here, answered as the error table says."""
    try:
        (validate_selector if patterns else validate_topic)(name)
    except ValueError as exc:
        kind = error_kind(exc)
        raise Refused(kind.status, kind.code, str(exc)) from None


def policies_for_security(settings: Settings) -> list[CorsPolicy | AuthPolicy]:
    """The security policies for `settings`, in the order the gate runs them (none with both off)."""
    cors = Cors(settings.cors_origins)
    policies: list[CorsPolicy | AuthPolicy] = []
    if cors.enabled:
        policies.append(CorsPolicy(cors))
    if settings.auth_enabled:
        policies.append(AuthPolicy(settings, cors))
    return policies
