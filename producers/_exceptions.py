"""The error tree of producers.

```
ProducerError
 ├─ TargetConfigError(ProducerError, ValueError)  an unknown target URL scheme or a bad option
 ├─ InvalidData(ProducerError, ValueError)         data no target would take: not one line of JSON, too big, bad topic
 ├─ TargetUnavailable                              the target stayed unreachable (connection refused or lost,
 │                                                 503) for the whole retry budget
 ├─ TargetRejected                                 the target refused the events for good (a 4xx), with its reason
 └─ TargetClosed                                   publish() after aclose()
```

Every message names the target (its URL, credentials hidden) and the cause.
"""

from __future__ import annotations


class ProducerError(Exception):
    """Base class of every error raised by producers and their targets."""


class TargetConfigError(ProducerError, ValueError):
    """A target URL with an unknown scheme, or an invalid option."""


class InvalidData(ProducerError, ValueError):
    """Data that no target would take: not JSON on one line, over `max_event_bytes`, or a bad topic or type."""


class TargetUnavailable(ProducerError):
    """The target could not be reached (or answered 503) for longer than the retry budget."""


class TargetRejected(ProducerError):
    """The target refused the events for good (a 4xx answer other than a line-level rejection)."""


class TargetClosed(ProducerError):
    """The target was used after `aclose()`."""
