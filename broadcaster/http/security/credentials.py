"""Where a request's token is read, and the RFC 6750 refusals.

Order: the `Authorization: Bearer` header, then the `broadcaster_token` cookie (set by
`POST /auth/session`, for `EventSource`, which cannot send headers), then `?access_token=`
only when `auth_query_token` is on. A query token sent to a server that does not take
them is refused, not ignored: the client learns why, and learns it before the URL (with
the token in it) spreads to more logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from starlette.types import Scope

from ..gate import Refused

COOKIE_NAME = "broadcaster_token"
QUERY_PARAMETER = "access_token"
REALM = 'Bearer realm="broadcaster"'

Source = Literal["bearer", "cookie", "query"]


@dataclass(frozen=True, slots=True)
class Credential:
    """A token as sent, and where it came from."""

    token: str
    source: Source


def challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    """The `WWW-Authenticate` header of a refusal (RFC 6750 section 3).

    `description` must come from our own text or validated names: it goes into a quoted
    header value, so it may hold no quote, backslash or control character.
    """
    value = REALM
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{_quotable(description)}"'
    return {"WWW-Authenticate": value}


def _quotable(text: str) -> str:
    return "".join(c for c in text if c >= " " and c not in '"\\\x7f')[:200]


#: The challenge of a request whose token expired while it was served (a streamed POST).
EXPIRED_CHALLENGE = challenge("invalid_token", "the token is invalid: expired")


def unauthorized(message: str, error: str | None = None, description: str | None = None) -> Refused:
    """401 `unauthorized` with its challenge: no token (plain), or a token that failed (`invalid_token`)."""
    return Refused(401, "unauthorized", message, challenge(error, description))


def forbidden(message: str, description: str) -> Refused:
    """403 `forbidden`: a valid token whose grants do not cover what was asked (`insufficient_scope`)."""
    return Refused(403, "forbidden", message, challenge("insufficient_scope", description))


def find_credential(scope: Scope, *, query_tokens: bool) -> Credential | None:
    """The request's token, by the order above; raises `Refused` (401) for a refused query token."""
    cookie_header = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return Credential(token.strip(), "bearer")
        elif name == b"cookie":
            cookie_header = value.decode("latin-1")
    if cookie_header is not None:
        token = _cookie(cookie_header)
        if token:
            return Credential(token, "cookie")
    query = scope.get("query_string", b"")
    if QUERY_PARAMETER.encode() in query:
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if key == QUERY_PARAMETER:
                if not query_tokens:
                    raise unauthorized(
                        "?access_token= is disabled on this server (auth_query_token): send the token as "
                        "Authorization: Bearer, or get the broadcaster_token cookie from POST /auth/session",
                        "invalid_token",
                        "query tokens are disabled",
                    )
                if value:
                    return Credential(value, "query")
    return None


def _cookie(header: str) -> str | None:
    # Pair by pair: http.cookies drops a whole header for one malformed pair of someone else's.
    for pair in header.split(";"):
        name, _, value = pair.strip().partition("=")
        if name == COOKIE_NAME:
            return value.strip().strip('"') or None
    return None
