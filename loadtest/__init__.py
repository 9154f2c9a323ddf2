"""Load generator and benchmark harness for Broadcaster (issue 5).

Run ``python -m loadtest SCENARIO`` (fanout, latency, idle, slow, ingest) or
``python -m loadtest --smoke``. Kept apart from the server: nothing in ``broadcaster``
or ``tests`` imports this package. All traffic goes to 127.0.0.1 and every loop is
bounded in count and in time.
"""

from __future__ import annotations

STRIDE = 10_000_000
"""Sequence numbers are ``step * STRIDE + i``: a delivery names its step by itself.

Step 0 is the warm-up, never counted in the results."""

__all__ = ["STRIDE"]
