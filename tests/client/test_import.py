"""`broadcaster.client` is for machines without the server: importing it loads no server dependency."""

from __future__ import annotations

import subprocess
import sys

SERVER_PACKAGES = ("fastapi", "starlette", "uvicorn", "redis", "hiredis", "uvloop", "httptools", "multipart")


def test_import_client_pulls_in_no_server_dependency():
    probe = (
        "import sys, broadcaster.client\n"
        "from broadcaster.client import Subscriber, iter_events, publish\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True)
    loaded = set(result.stdout.split())
    assert "httpx" in loaded and "broadcaster" in loaded  # the probe did import the client
    assert loaded.isdisjoint(SERVER_PACKAGES), sorted(loaded & set(SERVER_PACKAGES))


def test_import_client_all_lists_exactly_the_public_names():
    import types

    import broadcaster.client as client

    public = [
        name
        for name, value in vars(client).items()
        if not name.startswith("_") and name != "annotations" and not isinstance(value, types.ModuleType)
    ]
    assert client.__all__ == sorted(public)
    assert all(getattr(client, name) is not None for name in client.__all__)
