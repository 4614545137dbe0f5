"""Download a generated SFUI over loopback HTTP through the client into a verifying sink.

    python benchmarks/bench_delivery.py [--size 256] [--runs 3]

The client refreshes the TUF index, streams the image (hashing it against the index) into
the test sink, which authenticates it with EnvelopeReader and writes the payload to a file
with fsync — the agent's work minus the IPC hop. Servers: `sfu serve`, and nginx if it is
installed. Reference: `curl -o /dev/null` of the same file from the same server in the
same run. Also the client process's peak RSS (flat memory: it must not grow with --size).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

_CLIENT = """
import resource, sys, uuid
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sfupdate.client import HttpSource, RepositoryIndex, update
from sfupdate.keys import load_public_key
from tests.device_sink import VerifyingSink
url, state, trusted_root, key, out, vendor, klass = sys.argv[2:9]
sink = VerifyingSink(load_public_key(Path(key)), Path(out), uuid.UUID(vendor), uuid.UUID(klass))
index = RepositoryIndex(HttpSource(url), Path(state), Path(trusted_root))
result = update(index, sink)
assert result.installed is not None, "nothing installed"
print("maxrss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_firmware(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(MIB, left)
            f.write(os.urandom(n))
            left -= n


def build_repository(work: Path, size: int) -> tuple[Path, Path, str, str]:
    """(repository dir, key file, vendor uuid, class uuid) with one published image."""
    from sfupdate import keys
    from sfupdate.author import ImageSpec, sign_firmware
    from sfupdate.repo import Repository
    from sfupdate.sfui import class_uuid, vendor_uuid

    key = work / "key.pem"
    keys.write_private_key(keys.generate_private_key("ES256"), key)
    vendor = vendor_uuid("example.com")
    klass = class_uuid(vendor, "bench-board")
    firmware, sfui = work / "fw.bin", work / "fw.sfui"
    make_firmware(firmware, size)
    sign_firmware(firmware, sfui, keys.load_signer(key), ImageSpec(2, vendor, klass, "2.0"))
    firmware.unlink()
    repo = Repository.init(work / "repo", key)
    repo.add(sfui)
    repo.publish()
    sfui.unlink()
    return work / "repo", key, str(vendor), str(klass)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen within 10 s")


@contextmanager
def sfu_serve(repo: Path, work: Path) -> Iterator[str]:
    port = _free_port()
    with open(work / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sfupdate.cli.main", "serve", str(repo),
                                 "--port", str(port)], stdout=log, stderr=log)
        try:
            _wait_listening(port, proc)
            yield f"http://127.0.0.1:{port}/"
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def nginx(repo: Path, work: Path) -> Iterator[str | None]:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                       else None)
    if binary is None:
        yield None
        return
    run = work / "nginx"
    run.mkdir()
    port = _free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (run / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {run}/nginx.pid;\nerror_log {run}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; client_body_temp_path {run}/b; proxy_temp_path {run}/p;\n"
        f"fastcgi_temp_path {run}/f; uwsgi_temp_path {run}/u; scgi_temp_path {run}/s;\n"
        "default_type application/octet-stream; sendfile on;\n"
        f"server {{ listen 127.0.0.1:{port}; root {repo}; }} }}\n")
    proc = subprocess.Popen([binary, "-p", str(run), "-e", str(run / "error.log"), "-c",
                             str(run / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(10)


def target_url(base: str, repo: Path) -> str:
    [name] = [p.name for p in (repo / "targets").iterdir() if re.fullmatch(r"[0-9a-f]{64}\..*",
                                                                          p.name)]
    return f"{base}targets/{name}"


def time_curl(url: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_client(url: str, repo: Path, key: Path, vendor: str, klass: str, work: Path,
                runs: int) -> tuple[float, int]:
    times, peaks = [], []
    for i in range(runs):
        state, out = work / f"state-{i}", work / f"device-{i}"
        out.mkdir()
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", _CLIENT, str(ROOT), url, str(state),
             str(repo / "metadata" / "1.root.json"), str(key), str(out), vendor, klass],
            capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"client failed: {result.stderr.strip()}")
        peaks.append(int(result.stdout.split("maxrss_kib")[-1].split()[0]))
        shutil.rmtree(out)
        shutil.rmtree(state)
    return statistics.median(times), max(peaks)


def run(size_mib: int, runs: int) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="sfu-bench-delivery-") as tmp:
        work = Path(tmp)
        repo, key, vendor, klass = build_repository(work, size_mib * MIB)
        file_size = sum(p.stat().st_size for p in (repo / "targets").iterdir())
        with sfu_serve(repo, work) as serve_url, nginx(repo, work) as nginx_url:
            for name, base in (("sfu serve", serve_url), ("nginx", nginx_url)):
                if base is None:
                    rows.append([name, "not installed", "", "", ""])
                    continue
                curl = time_curl(target_url(base, repo), runs)
                client, rss = time_client(base, repo, key, vendor, klass, work, runs)
                rows.append([name, f"{client:.2f}", f"{curl:.2f}", f"{client / curl:.1f}",
                             f"{file_size / MIB / client:.0f}", f"{rss / 1024:.0f}"])
    header = ["server", "client -> sink s (median)", "curl -o /dev/null s", "ratio",
              "client MiB/s", "client peak RSS MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return (f"### Delivery: {size_mib} MiB SFUI over loopback HTTP ({platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()})\n\n"
            + "\n".join(lines)
            + "\n\nclient = index refresh + download + index hash + sink (authenticate, payload "
            "digest, write, fsync), one process;\nratio = client time / curl time for the "
            "same file from the same server in the same run.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256, help="image size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(run(args.size, args.runs))


if __name__ == "__main__":
    main()
