"""The file-descriptor limit: raised to the hard limit at start, and the stream cap derived from it.

Every open stream holds a socket, so the soft `RLIMIT_NOFILE` (often 1024) is
the real cap on streams; past it `accept()` fails and every new connection is
refused, health probes and publishers included. At start the server raises
the soft limit to the hard one, as nginx (`worker_rlimit_nofile`) and Go's
runtime do, and by default caps streams below it, keeping room for what must
keep working when the cap is reached.
"""

from __future__ import annotations

import logging

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Descriptors kept out of the stream cap: publishers, Redis connections, probes, the process's own files.
MIN_RESERVED_FDS = 128
#: ... or this share of the limit, if larger.
RESERVED_SHARE = 0.1
#: Used where the limit cannot be read.
FALLBACK_LIMIT = 1024


def fd_limits() -> tuple[int, int]:
    """The (soft, hard) `RLIMIT_NOFILE`; an unlimited hard limit is reported as the soft one."""
    if resource is None:  # pragma: no cover
        return FALLBACK_LIMIT, FALLBACK_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, soft if hard == resource.RLIM_INFINITY else hard


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit to the hard limit (where allowed); return (soft before, soft now)."""
    soft, hard = fd_limits()
    if resource is not None and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps it at OPEN_MAX
            logger.warning("could not raise the file-descriptor limit from %d to %d: %s", soft, hard, exc)
            return soft, soft
        return soft, hard
    return soft, soft


def default_max_streams(fd_limit: int) -> int:
    """The stream cap that leaves room within `fd_limit` for everything else (at least 1)."""
    reserved = max(MIN_RESERVED_FDS, int(fd_limit * RESERVED_SHARE))
    return max(1, fd_limit - reserved)
