"""The archive's HTTP routes: listing, segments served as files (every Range form, validators), bad input."""

from __future__ import annotations

import hashlib
import os
from email.utils import formatdate

import pytest

from broadcaster.archive._layout import segment_files

from ..support.tokens import SECRET, hs256
from .conftest import TOPIC
from .support import BASE_MS, make_events

KINDS = ["closed", "gzip", "open"]
BASE = f"/topics/{TOPIC}/archive"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _parts(response) -> list[tuple[str, bytes]]:
    """The (Content-Range, body) of each part of a multipart/byteranges answer."""
    boundary = response.headers["content-type"].split("boundary=")[1].encode()
    parts = []
    for chunk in response.content.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields["Content-Range"], body.removesuffix(b"\r\n")))
    return parts


async def test_listing_names_every_segment_newest_first_with_ids_times_and_state(archive_client, built):
    async with archive_client() as client:
        answer = (await client.get(BASE)).json()
    segments = answer["segments"]
    files = segment_files(built.root / TOPIC)
    assert [s["name"] for s in segments] == [p.name for p in reversed(files.values())]
    assert [s["open"] for s in segments] == [True] + [False] * (len(files) - 1)
    assert segments[-1]["gzip"] and segments[-1]["first_id"] == make_events(TOPIC, 1)[0].id
    assert segments[0]["last_id"] == make_events(TOPIC, 40, step_ms=1000)[-1].id
    for item in segments:
        assert (
            item["bytes"] == built.segments["open"].size
            if item["open"]
            else files[int(item["name"][:8])].stat().st_size
        )
        assert item["first_ts"] <= item["last_ts"]
        assert item["url"] == f"{BASE}/{item['name']}"
    assert answer["next"] is None


async def test_listing_pages_with_limit_and_before(archive_client, built):
    async with archive_client() as client:
        first = (await client.get(BASE, params={"limit": 2})).json()
        second = (await client.get(first["next"])).json()
        everything = (await client.get(BASE)).json()["segments"]
        zero = await client.get(BASE, params={"limit": 0})
        big = await client.get(BASE, params={"limit": 5000})
    assert [s["name"] for s in first["segments"] + second["segments"]] == [s["name"] for s in everything][:4]
    assert zero.status_code == 422 and "limit" in zero.json()["error"]["message"]
    assert big.status_code == 200 and len(big.json()["segments"]) == len(everything)  # pages of at most 1000


async def test_listing_of_a_topic_without_archive_is_a_404_naming_it(archive_client):
    async with archive_client() as client:
        missing = await client.get("/topics/other.topic/archive")
        invalid = await client.get("/topics/bad%20topic/archive")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_archived"
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_topic"


async def test_archive_routes_without_an_archive_dir_are_a_404_naming_the_setting(make_settings, client_factory):
    async with client_factory(make_settings()) as client:
        for path in (BASE, f"{BASE}/export", f"{BASE}/00000001-20250114T100000Z.ndjson"):
            answer = await client.get(path)
            assert answer.status_code == 404 and "--archive-dir" in answer.json()["error"]["message"], path


@pytest.mark.parametrize("kind", KINDS)
async def test_segment_full_download_is_the_file_with_validators(archive_client, built, kind):
    info = built.segments[kind]
    data = info.path.read_bytes()[: info.size]
    async with archive_client() as client:
        response = await client.get(f"{BASE}/{info.name}")
        head = await client.head(f"{BASE}/{info.name}")
    assert response.status_code == 200 and _sha(response.content) == _sha(data)
    h = response.headers
    assert h["accept-ranges"] == "bytes"
    assert h["content-length"] == str(len(data))
    assert h["content-type"] == ("application/gzip" if kind == "gzip" else "application/x-ndjson")
    assert h["content-disposition"] == f'attachment; filename="{TOPIC}-{info.name}"'
    assert h["last-modified"] == formatdate(info.mtime, usegmt=True)
    assert h["etag"].startswith('W/"') == (kind == "open")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data)) and head.headers["etag"] == h["etag"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("bytes=0-99", lambda n: (0, 100)),
        ("bytes=-50", lambda n: (n - 50, n)),
        ("bytes=100-", lambda n: (100, n)),
        ("bytes=10-10", lambda n: (10, 11)),
        ("bytes=200-999999", lambda n: (200, n)),  # an end past the file is cut to it
    ],
    ids=["first-100", "suffix-50", "open-from-100", "one-byte", "end-past-eof"],
)
async def test_segment_single_ranges_are_206_with_content_range(archive_client, built, kind, spec, expect):
    info = built.segments[kind]
    data = info.path.read_bytes()[: info.size]
    start, end = expect(len(data))
    async with archive_client() as client:
        response = await client.get(f"{BASE}/{info.name}", headers={"Range": spec})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
    assert response.headers["content-length"] == str(end - start)
    assert _sha(response.content) == _sha(data[start:end])


@pytest.mark.parametrize("kind", KINDS)
async def test_segment_several_ranges_are_multipart_byteranges(archive_client, built, kind):
    info = built.segments[kind]
    data = info.path.read_bytes()[: info.size]
    async with archive_client() as client:
        response = await client.get(f"{BASE}/{info.name}", headers={"Range": "bytes=0-9, 50-59, -5"})
        overlapping = await client.get(f"{BASE}/{info.name}", headers={"Range": "bytes=0-20,10-30"})
    assert response.status_code == 206 and response.headers["content-type"].startswith("multipart/byteranges")
    n = len(data)
    assert _parts(response) == [
        (f"bytes 0-9/{n}", data[0:10]),
        (f"bytes 50-59/{n}", data[50:60]),
        (f"bytes {n - 5}-{n - 1}/{n}", data[n - 5 :]),
    ]
    assert int(response.headers["content-length"]) == len(response.content)
    # Overlapping ranges are merged into one part.
    assert overlapping.status_code == 206 and overlapping.headers["content-range"] == f"bytes 0-30/{n}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "spec",
    ["bytes={n}-", "bytes={n}-{n2}", "bytes=abc", "bytes=5-3", "bytes=", "bytes=-0"],
    ids=["start-at-eof", "past-eof", "not-numbers", "reversed", "empty", "suffix-zero"],
)
async def test_segment_bad_ranges_are_416_with_the_length(archive_client, built, kind, spec):
    info = built.segments[kind]
    header = spec.format(n=info.size, n2=info.size + 10)
    async with archive_client() as client:
        response = await client.get(f"{BASE}/{info.name}", headers={"Range": header})
    assert response.status_code == 416, (header, response.status_code)
    assert response.headers["content-range"] == f"bytes */{info.size}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


async def test_segment_range_in_another_unit_is_ignored(archive_client, built):
    info = built.segments["closed"]
    async with archive_client() as client:
        response = await client.get(f"{BASE}/{info.name}", headers={"Range": "items=0-5"})
    assert response.status_code == 200 and response.content == info.path.read_bytes()


@pytest.mark.parametrize("kind", KINDS)
async def test_segment_if_none_match_and_if_modified_since_answer_304(archive_client, built, kind):
    info = built.segments[kind]
    url = f"{BASE}/{info.name}"
    async with archive_client() as client:
        etag = (await client.head(url)).headers["etag"]
        last_modified = formatdate(info.mtime, usegmt=True)
        same = await client.get(url, headers={"If-None-Match": etag})
        listed = await client.get(url, headers={"If-None-Match": f'"other", {etag}'})
        weak = await client.get(url, headers={"If-None-Match": "W/" + etag.removeprefix("W/")})
        star = await client.get(url, headers={"If-None-Match": "*"})
        other = await client.get(url, headers={"If-None-Match": '"other"'})
        since = await client.get(url, headers={"If-Modified-Since": last_modified})
        older = await client.get(url, headers={"If-Modified-Since": formatdate(info.mtime - 60, usegmt=True)})
        garbage = await client.get(url, headers={"If-Modified-Since": "yesterday"})
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        both = await client.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": last_modified})
    for response in (same, listed, weak, star, since):
        assert response.status_code == 304 and response.content == b""
        assert response.headers["etag"] == etag
    for response in (other, older, garbage, both):
        assert response.status_code == 200 and len(response.content) == info.size


@pytest.mark.parametrize("kind", ["closed", "gzip"])
async def test_segment_if_range_with_a_current_validator_gets_the_range_and_a_stale_one_the_whole(
    archive_client, built, kind
):
    info = built.segments[kind]
    url = f"{BASE}/{info.name}"
    async with archive_client() as client:
        head = await client.head(url)
        etag, last_modified = head.headers["etag"], head.headers["last-modified"]
        by_etag = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
        by_date = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": last_modified})
        stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
        stale_bad_range = await client.get(url, headers={"Range": "bytes=999999-", "If-Range": '"stale"'})
    assert by_etag.status_code == by_date.status_code == 206 and len(by_etag.content) == 10
    assert stale.status_code == 200 and len(stale.content) == info.size
    assert stale_bad_range.status_code == 200  # the range is not used, so it is not judged


async def test_open_segment_if_range_with_its_weak_etag_gets_the_whole(archive_client, built):
    """RFC 9110 13.1.5: If-Range needs a strong validator; a growing file only has a weak one."""
    info = built.segments["open"]
    async with archive_client() as client:
        etag = (await client.head(f"{BASE}/{info.name}")).headers["etag"]
        response = await client.get(f"{BASE}/{info.name}", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert etag.startswith("W/") and response.status_code == 200 and len(response.content) == info.size


async def test_open_segment_is_served_up_to_its_last_whole_line_and_a_range_resume_continues(archive_client, built):
    info = built.segments["open"]
    url = f"{BASE}/{info.name}"
    _append(info.path, b'{"id":"half a line being written')  # a write in progress, as another process sees it
    async with archive_client() as client:
        first = await client.get(url)
        assert first.content == info.path.read_bytes()[: info.size] and first.content.endswith(b"\n")
        etag = first.headers["etag"]
        # The archiver finishes the line and writes more (here: cut the half line, append whole ones).
        os.truncate(info.path, info.size)
        built.writer.write(TOPIC, make_events(TOPIC, 2, start=41, ts=BASE_MS + 40_000))
        grown = built.refresh()["open"]
        assert grown.name == info.name and grown.size > info.size
        unchanged = await client.get(url, headers={"If-None-Match": etag})
        rest = await client.get(url, headers={"Range": f"bytes={len(first.content)}-"})
    assert unchanged.status_code == 200  # it grew: the weak ETag changed
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {info.size}-{grown.size - 1}/{grown.size}"
    assert first.content + rest.content == grown.path.read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "%2e%2e",
        "..%2f..%2fetc%2fpasswd",
        "00000001-20250114T100000Z.ndjson%00",
        "index.ndjson",
        "%00",
        "99999999-20250114T100000Z.ndjson",  # a valid name that is not in the listing
        "00000001-20250114T100000Z.ndjson.tmp",
    ],
)
async def test_segment_names_outside_the_listing_are_404(archive_client, name):
    async with archive_client() as client:
        response = await client.get(f"{BASE}/{name}")
    assert response.status_code == 404, (name, response.status_code)
    assert response.json()["error"]["code"] == "not_found"


async def test_symlinks_never_lead_out_of_the_archive(archive_client, built, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    secret = outside / "00000099-20250114T100000Z.ndjson"
    secret.write_bytes(b'{"secret": true}\n')
    # A segment-named symlink in the topic folder, and a topic folder that is a symlink.
    (built.root / TOPIC / secret.name).symlink_to(secret)
    (outside / "other").mkdir()
    (outside / "other" / secret.name).write_bytes(secret.read_bytes())
    (built.root / "linked.topic").symlink_to(outside / "other")
    async with archive_client() as client:
        via_file = await client.get(f"{BASE}/{secret.name}")
        listing = (await client.get(BASE)).json()["segments"]
        via_dir = await client.get(f"/topics/linked.topic/archive/{secret.name}")
        via_dir_listing = await client.get("/topics/linked.topic/archive")
    assert via_file.status_code == 404 and secret.name not in [s["name"] for s in listing]
    assert via_dir.status_code == 404 and via_dir_listing.status_code == 404


async def test_archive_reads_need_the_topics_subscribe_grant_when_auth_is_on(archive_client, built):
    """Reading a topic's archive is reading the topic: the gate asks for the same grant as its stream."""
    name = built.segments["closed"].name
    paths = [BASE, f"{BASE}/{name}", f"{BASE}/export"]
    async with archive_client(auth_secret=SECRET) as client:
        anonymous = [await client.get(path) for path in paths]
        other = {"Authorization": f"Bearer {hs256(subscribe=['other.*'])}"}
        refused = [await client.get(path, headers=other) for path in paths]
        granted = {"Authorization": f"Bearer {hs256(subscribe=['sensors.*'])}"}
        allowed = [await client.get(path, headers=granted) for path in paths]
        head = await client.head(f"{BASE}/{name}")
    assert [r.status_code for r in anonymous] == [401, 401, 401] and head.status_code == 401
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert allowed[1].content == built.segments["closed"].path.read_bytes()
