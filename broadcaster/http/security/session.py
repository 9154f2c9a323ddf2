"""`POST /auth/session` and `DELETE /auth/session`: the cookie that lets `EventSource` send a token.

A page cannot give `EventSource` an `Authorization` header. It POSTs its token once as
a Bearer header; the gate verifies it (`AuthPolicy`), and the answer (204) sets the
`broadcaster_token` cookie: `HttpOnly` (no script reads it back), `SameSite=Strict`,
`Path=/`, `Secure` when the request came over HTTPS, and `Max-Age` equal to the
token's remaining life, so the browser drops the cookie when the token expires. The
browser then sends it with every request to this server, `EventSource`'s reconnects
included. `DELETE` clears it. With auth off both answer 204 and set nothing, so one
page works against either kind of server.
"""

from __future__ import annotations

import math
import time

from fastapi import APIRouter, Request, Response

from ...auth import Identity
from ..entry import decision_of
from .credentials import COOKIE_NAME, find_credential

router = APIRouter()


def session_cookie(token: str, max_age: int, *, secure: bool) -> str:
    """The `Set-Cookie` value of the session (an empty token and 0 clear it)."""
    attributes = [f"{COOKIE_NAME}={token}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)


@router.post(
    "/auth/session",
    status_code=204,
    summary="Set the session cookie",
    responses={204: {"description": "the broadcaster_token cookie is set"}, 401: {"description": "no valid token"}},
)
async def create_session(request: Request) -> Response:
    """Keep the verified `Authorization: Bearer` token as the `broadcaster_token` cookie (for EventSource)."""
    identity = decision_of(request).identity
    credential = find_credential(request.scope, query_tokens=False)
    if not isinstance(identity, Identity) or identity.expires_at is None or credential is None:
        return Response(status_code=204)  # auth off: every request is admitted, no cookie is needed
    remaining = max(1, math.floor(identity.expires_at - time.time()))
    cookie = session_cookie(credential.token, remaining, secure=request.url.scheme == "https")
    return Response(status_code=204, headers={"Set-Cookie": cookie, "Cache-Control": "no-store"})


@router.delete("/auth/session", status_code=204, summary="Clear the session cookie")
async def delete_session(request: Request) -> Response:
    """Clear the `broadcaster_token` cookie."""
    cookie = session_cookie("", 0, secure=request.url.scheme == "https")
    return Response(status_code=204, headers={"Set-Cookie": cookie, "Cache-Control": "no-store"})
