"""The errors of `broadcaster.client`.

```
BroadcasterError
 └─ ClientError
     ├─ RequestRefused         a 4xx that retrying will not change (status, code, message)
     │   ├─ Unauthorized       401, after one refresh of a callable token
     │   └─ Forbidden          403
     ├─ ServerUnavailable      no answer, or 5xx/429, for longer than the retry budget (publish: at once)
     └─ ProtocolError          the server sent something that is not one of its streams
```

Transient failures (a dropped connection, a refused connect, a 503, a dead
connection) never reach the consumer of a `Subscriber`: it reconnects.
"""

from __future__ import annotations

from .._exceptions import BroadcasterError


class ClientError(BroadcasterError):
    """Base class of the errors raised by `broadcaster.client`."""


class RequestRefused(ClientError):
    """The server refused the request with a 4xx that retrying will not change.

    `code` and `message` come from the server's JSON error when it sent one.
    """

    def __init__(self, url: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{url}: {status} {code}: {message}")
        self.url = url
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(RequestRefused):
    """401: no token, or one the server does not accept (a callable token was refreshed once first)."""


class Forbidden(RequestRefused):
    """403: the token does not grant this topic."""


class ServerUnavailable(ClientError):
    """The server could not be reached, or kept answering 5xx or 429, for longer than allowed."""


class ProtocolError(ClientError):
    """The server's answer is not a stream of this protocol (wrong content type, a bad line, an endless line)."""
