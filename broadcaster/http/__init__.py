"""The HTTP layer: the only part of broadcaster that knows about HTTP, FastAPI and uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is imported with the app, not with the package: `broadcaster archive` needs only the
    # NDJSON encoder of this package, and starts a second sooner without it.
    if name == "create_app":
        from .api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
