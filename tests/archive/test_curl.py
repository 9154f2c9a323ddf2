"""Acceptance 2 on a real server: `curl -r`, `curl -C -` after a download killed half-way, and httpx probing
every Range form, for a closed, a gzip and an open segment: byte-identical results (sha256), documented statuses."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest

from broadcaster import Event
from broadcaster.archive import ArchiveCatalog, ArchiveOptions, SegmentInfo
from broadcaster.archive._writer import ArchiveWriter

from ..support.servers import thread_server
from ..support.waiting import eventually_sync
from .conftest import TOPIC
from .support import BASE_MS, NDJSON_LINES, event_id

CURL = shutil.which("curl")
pytestmark = [pytest.mark.e2e]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def big(tmp_path: Path):
    """Segments of ~3 MB: a closed one, a gzip one (of random-ish data, so it stays large), an open one."""
    writer = ArchiveWriter(tmp_path, ArchiveOptions(segment_bytes=3_000_000, gzip=True), NDJSON_LINES)
    writer.open()
    events = [
        Event(
            TOPIC,
            event_id(TOPIC, n),
            "message",
            orjson.dumps({"n": n, "h": hashlib.sha512(b"%d" % n).hexdigest() + hashlib.sha512(b"x%d" % n).hexdigest()}),
            BASE_MS + n,
        )
        for n in range(1, 37001)  # 4 segments of 3 MB and an open one of ~1.9 MB
    ]
    closed = writer.write(TOPIC, events)
    writer.compress(closed[0])
    infos = ArchiveCatalog(tmp_path).segments(TOPIC)
    kinds = {"gzip": infos[0], "closed": infos[1], "open": infos[-1]}
    assert kinds["gzip"].gzip and not kinds["closed"].gzip and kinds["open"].open
    assert all(info.size > 1_000_000 for info in kinds.values())
    yield tmp_path, writer, kinds
    writer.close()


def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL, "curl is not installed (apt-get install curl; .ci/run installs it)"
    return subprocess.run([CURL, "-sS", *args], capture_output=True, timeout=30)


def _served(info: SegmentInfo) -> bytes:
    return info.path.read_bytes()[: info.size]


@pytest.mark.parametrize("kind", ["closed", "gzip", "open"])
def test_curl_range_and_resume_after_a_killed_download_are_byte_identical(make_settings, big, kind, tmp_path_factory):
    root, writer, kinds = big
    info = kinds[kind]
    out = tmp_path_factory.mktemp("curl")
    with thread_server(make_settings(archive_dir=str(root))) as server:
        url = f"{server.url}/topics/{TOPIC}/archive/{info.name}"
        data = _served(info)
        for spec, expected in (("0-99", data[:100]), ("-50", data[-50:]), ("1000-", data[1000:])):
            result = _curl("-r", spec, "-o", str(out / "part"), "-w", "%{http_code}", url)
            assert result.stdout == b"206" and _sha((out / "part").read_bytes()) == _sha(expected), spec

        # A slow download, killed part-way (as a flaky link or Ctrl-C would), then `curl -C -`.
        target = out / info.name
        slow = subprocess.Popen([CURL, "-sS", "--limit-rate", "5k", "-o", str(target), url])
        try:
            eventually_sync(lambda: target.exists() and target.stat().st_size > 0, what="a part downloaded")
        finally:
            slow.send_signal(signal.SIGKILL)
            slow.wait(5)
        partial = target.stat().st_size
        assert 0 < partial < info.size, partial  # killed before the end
        if kind == "open":  # the archiver writes on meanwhile: the resume must continue the same bytes
            writer.write(TOPIC, [Event(TOPIC, event_id(TOPIC, 37001), "message", b'{"n":37001}', BASE_MS + 37001)])
        now = next(s for s in ArchiveCatalog(root).segments(TOPIC) if s.name == info.name)
        resumed = _curl("-C", "-", "-o", str(target), "-w", "%{http_code}", url)
    assert resumed.returncode == 0 and resumed.stdout == b"206", resumed.stderr
    assert _sha(target.read_bytes()) == _sha(_served(now))
    if kind == "open":
        assert now.size > info.size and target.read_bytes().endswith(b'{"n":37001}}\n')


def test_httpx_probes_every_range_form_on_a_real_server(make_settings, big):
    root, _, kinds = big
    with thread_server(make_settings(archive_dir=str(root))) as server, httpx.Client(base_url=server.url) as client:
        for kind, info in kinds.items():
            url = f"/topics/{TOPIC}/archive/{info.name}"
            data = _served(info)
            n = len(data)
            full = client.get(url)
            assert (
                full.status_code == 200
                and _sha(full.content) == _sha(data)
                and full.headers["accept-ranges"] == "bytes"
            )
            etag, modified = full.headers["etag"], full.headers["last-modified"]
            for spec, (start, end) in {"0-99": (0, 100), "-50": (n - 50, n), "1000-": (1000, n)}.items():
                part = client.get(url, headers={"Range": f"bytes={spec}"})
                assert part.status_code == 206 and part.headers["content-range"] == f"bytes {start}-{end - 1}/{n}"
                assert _sha(part.content) == _sha(data[start:end]), (kind, spec)
            multi = client.get(url, headers={"Range": "bytes=0-9,100-109"})
            assert multi.status_code == 206 and multi.headers["content-type"].startswith("multipart/byteranges")
            assert data[0:10] in multi.content and data[100:110] in multi.content
            bad = client.get(url, headers={"Range": f"bytes={n}-"})
            assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{n}"
            assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
            assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
            stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
            assert stale.status_code == 200 and len(stale.content) == n
            head = client.head(url)
            assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(n)
            assert head.headers["content-disposition"] == f'attachment; filename="{TOPIC}-{info.name}"'
            assert etag.startswith("W/") == (kind == "open")
