"""Admission caps: open streams (per process, per client), new streams per second, publish rate per client.

The gate runs `AdmissionPolicy` (last, after the policies that say who is
asking) before a lane runs; a refusal is a `Refused` (the gate's), answered
by the error table as JSON with `Retry-After`:

| cap | status | `error.code` |
| --- | --- | --- |
| `max_streams` open streams in this process | 503 | `too_many_streams` |
| `max_streams_per_client` open streams of one client | 429 | `too_many_client_streams` |
| `admit_rate` new streams a second (a reconnect storm) | 503 | `too_many_new_streams` |
| `publish_rate` events a second of one client, single POST | 429 | `rate_limited` |

A streamed publish is not refused past its rate: the ingest lane calls
`pace()` before each batch, so the server reads its body more slowly (TCP
backpressure reaches the sender). A stream's place is given back by the
decision's `on_end` when its lane is done.
A client is its token's `sub` when the request is authenticated, else its
address (`X-Forwarded-For` from a proxy in `forwarded_allow_ips`, as uvicorn
resolves it). The caps only count; the streams already open never notice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..._config import Settings
from ...limits import KeyedBuckets, StormGate, StreamSlots, StreamTicket, default_max_streams, raise_fd_limit
from ..errors import RETRY_AFTER_S
from ..gate import Action, Decision, GateRequest, Refused as GateRefused

logger = logging.getLogger(__name__)

#: Longest client key kept (an address, or a token's `sub`); longer ones are cut.
MAX_KEY_CHARS = 200


class Refused(GateRefused):
    """A request refused by a cap: 429 or 503, with `Retry-After` in seconds.

    A refused stream also closes its connection: a client that keeps it open
    would hold a file descriptor past the cap that protects them.
    """

    def __init__(self, status: int, code: str, message: str, retry_after_s: int, *, close: bool = False) -> None:
        headers = {"Retry-After": str(retry_after_s)}
        if close:
            headers["Connection"] = "close"
        super().__init__(status, code, message, headers)
        self.retry_after_s = retry_after_s


def client_key(scope: dict[str, Any] | Any, identity: str | None = None) -> str:
    """Who is asking, for the per-client caps: `sub:<identity>` if known, else `addr:<client host>`."""
    if identity:
        return "sub:" + identity[:MAX_KEY_CHARS]
    client = scope.get("client")
    host = client[0] if client else "unknown"
    return "addr:" + str(host)[:MAX_KEY_CHARS]


class Admission:
    """The caps of one process, from `settings`; `fd_limit` sets `max_streams` when it is 0 (auto)."""

    def __init__(self, settings: Settings, *, fd_limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        now = clock()
        self.max_streams = settings.max_streams or default_max_streams(fd_limit)
        self.streams = StreamSlots(self.max_streams, settings.max_streams_per_client)
        self.storm: StormGate | None = None
        if settings.admit_rate > 0:
            self.storm = StormGate(settings.admit_rate, settings.admit_burst or max(1.0, settings.admit_rate), now)
        self.publishers: KeyedBuckets | None = None
        self.publish_burst = 0
        if settings.publish_rate > 0:
            self.publish_burst = settings.publish_burst or max(1, math.ceil(settings.publish_rate))
            self.publishers = KeyedBuckets(settings.publish_rate, self.publish_burst)
        self.refused: dict[str, int] = {}

    def _refuse(self, status: int, code: str, message: str, retry_after_s: int, *, close: bool = True) -> Refused:
        self.refused[code] = self.refused.get(code, 0) + 1
        return Refused(status, code, message, retry_after_s, close=close)

    def admit_stream(self, client: str) -> StreamTicket:
        """Count a new stream of `client`; return its ticket (release it when the stream ends) or raise `Refused`."""
        streams = self.streams
        if streams.full():
            message = f"the server has {streams.total} open streams, its limit (max_streams): retry later"
            raise self._refuse(503, "too_many_streams", message, random.randint(RETRY_AFTER_S, 3 * RETRY_AFTER_S))
        if streams.client_full(client):
            message = (
                f"this client has {streams.count(client)} open streams, the limit per client "
                f"(max_streams_per_client): close one before opening another"
            )
            raise self._refuse(429, "too_many_client_streams", message, RETRY_AFTER_S)
        if self.storm is not None:
            retry_after = self.storm.admit(self.clock())
            if retry_after is not None:
                message = "too many new streams at once (admit_rate): the server admits them gradually, retry later"
                raise self._refuse(503, "too_many_new_streams", message, retry_after)
        return streams.acquire(client)

    def admit_publish(self, client: str, events: int = 1) -> None:
        """Take `events` from `client`'s publish budget now, or raise `Refused` (429 `rate_limited`)."""
        if self.publishers is None:
            return
        wait = self.publishers.get(client, self.clock()).take(events, self.clock())
        if wait > 0:
            message = (
                f"this client publishes faster than publish_rate ({self.publishers.rate:g} events/s, "
                f"burst {self.publish_burst}): retry after the Retry-After seconds"
            )
            raise self._refuse(429, "rate_limited", message, max(1, math.ceil(wait)), close=False)

    async def pace(self, client: str, events: int) -> None:
        """Take `events` from `client`'s budget, waiting for them if need be (streamed publishes)."""
        if self.publishers is None or events <= 0:
            return
        wait = self.publishers.get(client, self.clock()).reserve(events, self.clock())
        if wait > 0:
            await asyncio.sleep(wait)

    @property
    def batch_limit(self) -> int | None:
        """Most events a streamed publish may send in one batch (its burst), or None when not limited."""
        return self.publish_burst or None


def start_admission(settings: Settings) -> Admission:
    """The caps of this process at its start: raise the soft file-descriptor limit to the hard one, log both."""
    before, fd_limit = raise_fd_limit()
    admission = Admission(settings, fd_limit=fd_limit)
    raised = f" (raised from {before})" if fd_limit > before else ""
    derived = "" if settings.max_streams else " (derived from it)"
    logger.info("file-descriptor limit %d%s; max_streams %d%s", fd_limit, raised, admission.max_streams, derived)
    if settings.max_streams > fd_limit:
        logger.warning("max_streams %d is above the file-descriptor limit %d", settings.max_streams, fd_limit)
    return admission


def identity_key(identity: Any) -> str | None:
    """The token subject of a gate decision's identity (`subject` or `sub`, or the identity itself if a string).

    None for no identity or an anonymous one (no subject): the client is then its address.
    """
    if identity is None or isinstance(identity, str):
        return identity or None
    if isinstance(identity, Mapping):
        sub = identity.get("sub")
    else:
        sub = getattr(identity, "subject", None) or getattr(identity, "sub", None)
    return str(sub) if sub else None


class AdmissionPolicy:
    """The caps as the gate's policy (`http/gate.py`), after the policies that set the identity.

    A stream (GET on a stream path) takes a place among the open streams, given back
    by the decision's `on_end` when the lane is done; a single JSON publish takes one
    event from its client's budget. Everything else passes untouched.
    """

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    async def admit(self, request: GateRequest, decision: Decision) -> Decision:
        action = request.action
        if action is Action.SUBSCRIBE and request.stream and request.method == "GET":
            ticket = self.admission.admit_stream(client_key(request.scope, identity_key(decision.identity)))
            return decision.adding(on_end=ticket.release)
        if action is Action.PUBLISH and _is_single_event(request.headers.get("content-type", "")):
            self.admission.admit_publish(client_key(request.scope, identity_key(decision.identity)))
        return decision


def _is_single_event(content_type: str) -> bool:
    """Whether a publish body is one JSON event (the default) rather than a streamed body."""
    return content_type.split(";", 1)[0].strip().lower() in ("", "application/json")
