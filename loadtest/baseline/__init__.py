"""The naive tutorial-style baseline server (see ``app.py``)."""

from __future__ import annotations
