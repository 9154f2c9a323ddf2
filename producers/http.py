"""HttpTarget: events as streamed NDJSON POSTs to a broadcaster server.

Events of one topic go into one long `POST /topics/{topic}/events` whose body is
an async generator: each batch is written as soon as it is buffered (after
`linger_s`), and the server publishes each line as it arrives, so a subscriber
sees an event within milliseconds while the POST is still open. A POST ends
after `max_post_lines`, `max_post_bytes` or `max_post_s`, after `idle_s` without
events, when the next event is for another topic, or on `flush()`/`aclose()`;
its answer (the server's ingest report) acknowledges the lines.

Lines taken from the buffer stay held until acknowledged. On a 503 or a 413
the report says how many lines the server took (`lines`), and the rest is sent
again. On a lost connection nothing is known, so the whole POST is sent again:
delivery is at least once, and a line may then arrive twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from ._base import Backoff, Target, safe_url
from ._exceptions import TargetConfigError, TargetRejected

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_POST_LINES = 10_000
DEFAULT_MAX_POST_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_POST_S = 5.0
DEFAULT_IDLE_S = 1.0
#: Answers after which the same lines are sent again (with backoff).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NDJSON = {"Content-Type": "application/x-ndjson"}


class HttpTarget(Target):
    """Publish to a broadcaster server over HTTP: `async with HttpTarget("http://127.0.0.1:8000") as target:`.

    `target.publish(topic, data)` buffers; see `Target` for the buffer, overflow and
    retry options. `token` (a string, or a function returning the current one) is sent as
    `Authorization: Bearer` with every POST to a server with access control; with a
    function, a POST refused with 401 (the token expired mid-stream) is sent again with
    the next token, from the line the server's report says it stopped at. Raises
    `TargetConfigError` for a URL that is not http(s).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        token: str | Callable[[], str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_post_lines: int = DEFAULT_MAX_POST_LINES,
        max_post_bytes: int = DEFAULT_MAX_POST_BYTES,
        max_post_s: float = DEFAULT_MAX_POST_S,
        idle_s: float = DEFAULT_IDLE_S,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise TargetConfigError(f"HttpTarget needs an http:// or https:// URL, got {safe_url(url)!r}")
        super().__init__(**options)
        self.url = url.rstrip("/")
        self.name = f"HttpTarget({safe_url(self.url)})"
        self.headers = dict(headers or {})
        self.token = token
        self.timeout_s = timeout_s
        self.max_post_lines = max_post_lines
        self.max_post_bytes = max_post_bytes
        self.max_post_s = max_post_s
        self.idle_s = idle_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def _open(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.url, timeout=self.timeout_s, headers=self.headers, transport=self._transport
        )

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _send(self) -> None:
        while (topic := await self._next_topic()) is not None:
            await self._deliver(topic)

    async def _deliver(self, topic: str) -> None:
        """POSTs for `topic` until every line taken for it was acknowledged."""
        assert self._client is not None
        client = self._client
        where = safe_url(self.url)
        params = {"type": self.type} if self.type != "message" else None
        backoff = Backoff(self.retry_for_s, stats=self.stats)
        sent: list[bytes] = []  # lines of the current POST: unacknowledged ones first, then live ones
        while True:
            try:
                response = await client.post(
                    f"/topics/{topic}/events", params=params, content=self._body(topic, sent), headers=self._headers()
                )
            except httpx.TransportError as exc:
                await backoff.wait(f"cannot reach {where}: {type(exc).__name__}: {str(exc) or 'no detail'}")
                continue
            status = response.status_code
            acked, message = self._account(response, topic, len(sent))
            del sent[:acked]
            self._done(acked)
            if acked:
                backoff.reset()
            if not sent:
                return  # every line of the POST was answered for, by the report
            if status in (200, 422):  # 422: every line was rejected, and the report says which
                if not acked:
                    raise TargetRejected(f"{where} answered {status} but acknowledged none of {len(sent)} lines")
                continue
            if status == 413 and acked:
                continue  # the server's body limit: send the rest in a new POST
            if status in RETRY_STATUSES or (status == 401 and callable(self.token)):
                await backoff.wait(f"{where} answered {status}: {message}")
                continue
            raise TargetRejected(f"{where} refused the events for topic {topic!r}: {status} {message}")

    def _headers(self) -> dict[str, str]:
        token = self.token() if callable(self.token) else self.token
        return {**_NDJSON, "Authorization": f"Bearer {token}"} if token else _NDJSON

    async def _body(self, topic: str, sent: list[bytes]) -> AsyncIterator[bytes]:
        batch = self.batch
        for start in range(0, len(sent), batch):  # first what an earlier POST did not get acknowledged
            yield b"\n".join(sent[start : start + batch]) + b"\n"
        size = sum(map(len, sent)) + len(sent)
        deadline = time.monotonic() + self.max_post_s
        while len(sent) < self.max_post_lines and size < self.max_post_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._wait_for(topic, min(self.idle_s, remaining)):
                return
            lines = self._take(topic, min(batch, self.max_post_lines - len(sent)))
            if not lines:
                return
            sent.extend(lines)
            chunk = b"\n".join(lines) + b"\n"
            size += len(chunk)
            yield chunk

    def _account(self, response: httpx.Response, topic: str, in_post: int) -> tuple[int, str]:
        """Lines the answer acknowledges (from the ingest report), and its error message if any."""
        try:
            body = response.json()
        except ValueError:
            body = None
        message = response.text[:300]
        report: Any = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                message = str(error.get("message", message))
            report = body if response.status_code == 200 else body.get("report")
        if not isinstance(report, dict):
            return 0, message
        acked = min(int(report.get("lines", 0)), in_post)
        self.stats.sent += int(report.get("accepted", 0))
        rejected = int(report.get("rejected", 0))
        if rejected:
            self.stats.rejected += rejected
            first = (report.get("errors") or [{}])[0]
            logger.warning(
                "%s: the server rejected %d events on %s (first: line %s of its POST: %s)",
                self.name,
                rejected,
                topic,
                first.get("line"),
                first.get("reason"),
            )
        return acked, message
