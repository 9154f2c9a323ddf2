"""CORS: which pages on other origins may call the API, streams included.

`cors_origins` lists exact origins (`https://dash.example.com`); an origin on the list
gets `Access-Control-Allow-Origin: <that origin>` and `Access-Control-Allow-Credentials:
true`, so `new EventSource(url, {withCredentials: true})` and `fetch(..., {credentials:
"include"})` work across origins. `*` alone allows every origin without credentials
(no cookie, no `Authorization` sent by the browser on its own). An origin not on the
list gets no CORS headers at all, so the browser refuses to hand the answer to the page;
an origin is never reflected blindly. `Vary: Origin` goes on every answer whose headers
depend on the origin.

Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered here, before any
route: 204 with the allowed methods and headers (`Authorization`, `Content-Type` for JSON
and NDJSON bodies, `Last-Event-ID` for EventSource's reconnects), or 403 naming what
was refused.
"""

from __future__ import annotations

from ..gate import Refused

ALLOW_METHODS = frozenset({"GET", "HEAD", "POST", "DELETE"})
ALLOW_HEADERS = frozenset({"authorization", "content-type", "last-event-id", "accept", "cache-control"})
#: Response headers a cross-origin page may read (the simple ones are readable anyway).
EXPOSE_HEADERS = "Retry-After, WWW-Authenticate, Content-Disposition"
PREFLIGHT_MAX_AGE_S = 600

Headers = tuple[tuple[str, str], ...]


class Cors:
    """The CORS answer for `origins` (the `cors_origins` setting: exact origins, or `*` alone)."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = origins == ("*",)
        self.origins = frozenset(origins) - {"*"}
        self._vary: Headers = (("Vary", "Origin"),)
        self._allowed: dict[str, Headers] = {
            origin: (
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
                ("Vary", "Origin"),
            )
            for origin in self.origins
        }
        self._any: Headers = (("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", EXPOSE_HEADERS))

    @property
    def enabled(self) -> bool:
        return self.any or bool(self.origins)

    def allows(self, origin: str) -> bool:
        return self.any or origin in self.origins

    def headers(self, origin: str | None) -> Headers:
        """Headers for an answer to a request from `origin` (the `Origin` header; None if it had none).

        The tuples are built once per origin on the list and shared.
        """
        if self.any:
            return self._any
        if not self.origins:
            return ()
        if origin is None:
            return self._vary
        return self._allowed.get(origin, self._vary)

    def preflight(self, origin: str, method: str, request_headers: str) -> Headers:
        """The headers of a 204 preflight answer; raises `Refused` (403) naming what is not allowed."""
        if not self.allows(origin):
            raise Refused(403, "forbidden", f"origin {origin[:100]} may not call this server (cors_origins)")
        if method.upper() not in ALLOW_METHODS:
            message = f"method {method[:20]} is not allowed cross-origin; use {', '.join(sorted(ALLOW_METHODS))}"
            raise Refused(403, "forbidden", message)
        asked = [h.strip().lower() for h in request_headers.split(",") if h.strip()]
        refused = [h[:40] for h in asked if h not in ALLOW_HEADERS]
        if refused:
            raise Refused(403, "forbidden", f"request headers not allowed cross-origin: {', '.join(refused[:5])}")
        return (
            *self.headers(origin),
            ("Access-Control-Allow-Methods", ", ".join(sorted(ALLOW_METHODS))),
            ("Access-Control-Allow-Headers", ", ".join(sorted(ALLOW_HEADERS))),
            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_S)),
        )
