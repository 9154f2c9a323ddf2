"""The HTTP layer: the only part of broadcaster that knows about HTTP, FastAPI and uvicorn."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
