"""Archive segment downloads: Broadcaster against nginx serving the same file (issue 14, acceptance 3).

```
python -m loadtest download                      # a 1 GB segment, 10 clients at once, both targets
python -m loadtest download --size-mb 64 --runs 3
python -m loadtest download --smoke              # 32 MB: seconds, checks the numbers come out
```

It writes one closed segment of NDJSON lines (about 1 KB each) into a throwaway archive
directory, then for each target (`broadcaster serve --archive-dir DIR`, and Debian's nginx
serving DIR as static files, `sendfile on`, one worker) on a free 127.0.0.1 port:
one full download checked by sha256, then N `curl` clients downloading the whole file at
once to /dev/null. The server is pinned to core 0 and the clients to core 1 (when there
are two). Measured: wall time and MB/s over all clients, the server's CPU seconds
(`/proc`, threads included) and CPU per GB, its VmRSS just before, the peak during
(sampled every 10 ms) and just after. Every client has a timeout; both servers are
stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtest import procstat
from loadtest.processes import RssSampler, broadcaster_server, rss_kb, stop
from loadtest.targets import HOST
from tests.support.redis_server import free_port

TOPIC = "bench.download"
SEGMENT = "00000001-20250114T100000Z.ndjson"
NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid @PREFIX@/nginx.pid;
error_log @PREFIX@/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path @PREFIX@/body;
    proxy_temp_path @PREFIX@/proxy;
    fastcgi_temp_path @PREFIX@/fastcgi;
    uwsgi_temp_path @PREFIX@/uwsgi;
    scgi_temp_path @PREFIX@/scgi;
    types { application/x-ndjson ndjson; }
    server {
        listen 127.0.0.1:@PORT@;
        location = /readyz { return 200 "ok\\n"; }
        location /topics/ {
            # /topics/T/archive/NAME -> DIR/T/NAME, like Broadcaster's route
            rewrite ^/topics/([^/]+)/archive/([^/]+)$ /files/$1/$2 last;
        }
        location /files/ { internal; alias @ROOT@/; }
    }
}
"""


@dataclass
class Result:
    target: str
    clients: int
    file_mb: float
    seconds: float
    mb_per_s: float
    server_cpu_s: float
    cpu_s_per_gb: float
    rss_before_mb: float
    rss_peak_mb: float
    rss_growth_mb: float
    rss_after_mb: float
    complete: bool


def write_segment(root: Path, size_mb: int) -> Path:
    """One closed segment of about `size_mb` MB of event lines, with its index record."""
    folder = root / TOPIC
    folder.mkdir(parents=True)
    path = folder / SEGMENT
    target = size_mb * 1024 * 1024
    pad = "x" * 900
    base = 1_736_848_800_000
    written = n = 0
    with open(path, "wb") as f:
        while written < target:
            block = "".join(
                f'{{"id":"{base + i // 100}-{i}","topic":"{TOPIC}","type":"message","ts":{base + i // 100},'
                f'"data":{{"n":{i},"pad":"{pad}"}}}}\n'
                for i in range(n, n + 4096)
            ).encode()
            f.write(block)
            written += len(block)
            n += 4096
    last = n - 1
    record = {"seq": 1, "first_id": f"{base}-0", "last_id": f"{base + last // 100}-{last}"}
    record |= {"first_ts": base, "last_ts": base + last // 100, "bytes": written}
    (folder / "index.ndjson").write_text(json.dumps(record) + "\n")
    return path


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _sha256_of_download(url: str, timeout_s: float) -> str:
    digest = hashlib.sha256()
    with subprocess.Popen(["curl", "-sS", "--max-time", str(int(timeout_s)), url], stdout=subprocess.PIPE) as curl:
        assert curl.stdout is not None
        while block := curl.stdout.read(1 << 20):
            digest.update(block)
    if curl.returncode:
        raise RuntimeError(f"curl {url} failed with {curl.returncode}")
    return digest.hexdigest()


def _pin(pid: int, cpu: int | None) -> None:
    if cpu is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {cpu})


@contextlib.contextmanager
def nginx_server(root: Path, workdir: Path) -> Iterator[tuple[str, int]]:
    """Debian's nginx serving `root` under the same URLs; yields ``(base URL, pid)``."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
    port = free_port()
    prefix = workdir / "nginx"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    text = NGINX_CONF.replace("@PREFIX@", str(prefix)).replace("@PORT@", str(port)).replace("@ROOT@", str(root))
    conf.write_text(text)
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")])
    try:
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 15
        while subprocess.run(["curl", "-sf", "-o", "/dev/null", url + "/readyz"], check=False).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(prefix / 'error.log').read_text()[-1000:]}")
            time.sleep(0.05)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGQUIT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        stop(process)


def _curl(url: str, out: str, cpu: int | None, timeout_s: float) -> subprocess.Popen[bytes]:
    command = ["curl", "-sS", "--max-time", str(int(timeout_s)), "-o", out, "-w", "%{size_download}", url]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def measure(name: str, url: str, pid: int, path: Path, clients: int, cpus: tuple[int | None, int | None]) -> Result:
    size = path.stat().st_size
    timeout_s = 60 + size * clients / 20e6  # at least 20 MB/s, or something is wrong
    segment_url = f"{url}/topics/{TOPIC}/archive/{SEGMENT}"
    _pin(pid, cpus[0])
    # Warm-up and check: one full download, byte for byte.
    if _sha256_of_download(segment_url, timeout_s) != _sha256_of_file(path):
        raise RuntimeError(f"{name} served different bytes")
    _pin(pid, cpus[0])  # threads started by the warm-up
    time.sleep(0.5)
    before = rss_kb(pid)
    cpu_before = procstat.cpu_seconds(procstat.tree(pid))
    started = time.perf_counter()
    with RssSampler(pid, 0.01) as sampler:
        downloads = [_curl(segment_url, "/dev/null", cpus[1], timeout_s) for _ in range(clients)]
        sizes = []
        for download in downloads:
            out, _ = download.communicate(timeout=timeout_s + 5)
            sizes.append(int(out or 0))
    seconds = time.perf_counter() - started
    cpu = procstat.cpu_seconds(procstat.tree(pid)) - cpu_before
    time.sleep(0.5)
    after = rss_kb(pid)
    total_mb = size * clients / 1e6
    return Result(
        target=name,
        clients=clients,
        file_mb=round(size / 1e6, 1),
        seconds=round(seconds, 2),
        mb_per_s=round(total_mb / seconds, 1),
        server_cpu_s=round(cpu, 2),
        cpu_s_per_gb=round(cpu / (total_mb / 1000), 3),
        rss_before_mb=round(before / 1024, 1),
        rss_peak_mb=round(sampler.peak_kb / 1024, 1),
        rss_growth_mb=round((sampler.peak_kb - before) / 1024, 1),
        rss_after_mb=round(after / 1024, 1),
        complete=all(s == size for s in sizes),
    )


def run(size_mb: int, clients: int, runs: int, targets: list[str], pin: bool) -> list[Result]:
    cores = sorted(os.sched_getaffinity(0))
    cpus: tuple[int | None, int | None] = (cores[0], cores[1]) if pin and len(cores) >= 2 else (None, None)
    results = []
    with tempfile.TemporaryDirectory(prefix="loadtest-download-") as tmp:
        root = Path(tmp) / "archive"
        path = write_segment(root, size_mb)
        for _ in range(runs):
            for target in targets:
                if target == "broadcaster":
                    with broadcaster_server("--archive-dir", str(root)) as (url, pid):
                        results.append(measure(target, url, pid, path, clients, cpus))
                else:
                    with nginx_server(root, Path(tmp)) as (url, pid):
                        results.append(measure(target, url, pid, path, clients, cpus))
                print(json.dumps(asdict(results[-1])), flush=True)
    return results


def summary(results: list[Result]) -> str:
    lines = []
    keys = ("mb_per_s", "server_cpu_s", "cpu_s_per_gb", "rss_growth_mb", "rss_after_mb")
    medians: dict[str, dict[str, float]] = {}
    for target in dict.fromkeys(r.target for r in results):
        rs = [r for r in results if r.target == target]
        medians[target] = {k: statistics.median(getattr(r, k) for r in rs) for k in keys}
        m = medians[target]
        lines.append(
            f"{target:12} {rs[0].clients} clients x {rs[0].file_mb} MB: {m['mb_per_s']:.0f} MB/s, "
            f"server CPU {m['server_cpu_s']:.2f} s ({m['cpu_s_per_gb']:.3f} s/GB), "
            f"RSS growth {m['rss_growth_mb']:.1f} MB, after {m['rss_after_mb']:.1f} MB"
            + ("" if all(r.complete for r in rs) else "  INCOMPLETE DOWNLOADS")
        )
    if "broadcaster" in medians and "nginx" in medians:
        b, n = medians["broadcaster"], medians["nginx"]
        lines.append(
            f"broadcaster/nginx: throughput {b['mb_per_s'] / n['mb_per_s']:.2f}x, "
            f"CPU per GB {b['cpu_s_per_gb'] / max(n['cpu_s_per_gb'], 1e-9):.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest download", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="segment size in MiB (default 1024)")
    parser.add_argument("--clients", type=int, default=10, help="concurrent downloads (default 10)")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    parser.add_argument("--target", default="broadcaster,nginx", help="comma list: broadcaster, nginx")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the clients to cores")
    parser.add_argument("--smoke", action="store_true", help="a 32 MiB segment: seconds")
    args = parser.parse_args(argv)
    if not shutil.which("curl"):
        parser.error("the clients are curl processes: apt-get install -y curl")
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    if unknown := set(targets) - {"broadcaster", "nginx"}:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    size_mb = 32 if args.smoke else args.size_mb
    results = run(size_mb, args.clients, max(1, args.runs), targets, not args.no_pin)
    print(summary(results))
    return 0 if all(r.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
