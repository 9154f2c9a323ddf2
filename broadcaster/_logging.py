"""The server's log configuration: uvicorn's own, plus the `broadcaster` loggers at `--log-level`.

uvicorn configures only its own loggers; without this, the project's loggers fall through
to Python's last-resort handler, which shows WARNING and above whatever `--log-level` says.
"""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging dict config with a `broadcaster` logger at `level` on uvicorn's default handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["broadcaster"] = {
        "()": "uvicorn.logging.DefaultFormatter",
        "fmt": "%(levelprefix)s %(name)s: %(message)s",
    }
    config["handlers"]["broadcaster"] = {
        "formatter": "broadcaster",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "level": level.upper(),
    }
    # The level is the handler's: configuring a logger resets the levels of its existing child
    # loggers, which would undo a level an embedding application (or pytest's caplog) set on
    # one of them. Propagating is harmless (the server's root logger has no handler).
    config["loggers"]["broadcaster"] = {"handlers": ["broadcaster"], "level": "DEBUG", "propagate": True}
    return config
