"""A full update over loopback HTTP: server -> `sfu client update` -> agent -> slot (fsync).

    python benchmarks/bench_delivery.py [--size-mib 256] [--runs 3]

A generated image (random bytes) is signed and published in a repository; a sim board is
provisioned with v1 and a real `sfu agent serve` runs on it. Each run is one
`sfu client update` process: TUF index refresh, download, hash against the index, IPC to
the agent, which authenticates the SFUI, checks policy, writes the payload into the slot
while hashing it, fsyncs it and records the trial. Servers: `sfu serve`, and nginx if it is
installed. Reference: `curl -o /dev/null` of the same file from the same server in the same
run. Also the peak RSS (VmHWM) of the client process and of the agent (flat memory: neither
may grow with the image size).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    machine,
    make_random_file,
    run_measured,
    sfu_argv,
    summarise,
    table,
    vm_hwm_kib,
)

MIB = 1024 * 1024
VENDOR, CLASS = "example.com", "bench-board"


def _sfu(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)


def build_world(work: Path, size: int) -> tuple[Path, Path]:
    """(repository with one published image of `size` bytes, provisioned board)."""
    _sfu("keys", "generate", "--alg", "ES256", "-o", work / "author.key")
    _sfu("keys", "public", work / "author.key", "-o", work / "author.pub")
    _sfu("keys", "generate", "--alg", "ES256", "-o", work / "repo.key")
    (work / "v1.bin").write_bytes(b"v1" * 4096)
    make_random_file(work / "v2.bin", size)
    for name, sequence in (("v1", 1), ("v2", 2)):
        _sfu("sign", work / f"{name}.bin", "--key", work / "author.key", "--sequence",
             str(sequence), "--vendor", VENDOR, "--class", CLASS, "-o", work / f"{name}.sfui")
        (work / f"{name}.bin").unlink()
    board = work / "board"
    slot_size = -(-(size + MIB) // MIB) * MIB
    _sfu("board", "create", board, "--slot-size", str(slot_size))
    _sfu("board", "provision", board, "--trust", work / "author.pub", "--vendor", VENDOR,
         "--class", CLASS, "--firmware", work / "v1.sfui")
    repo = work / "repo"
    _sfu("repo", "init", repo, "--key", work / "repo.key", "--firmware-key",
         work / "author.pub")
    _sfu("repo", "add", repo, work / "v2.sfui")
    _sfu("repo", "publish", repo)
    (work / "v2.sfui").unlink()
    return repo, board


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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
        _stop(proc)


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
        _stop(proc)


@contextmanager
def agent(board: Path, work: Path) -> Iterator[tuple[Path, int]]:
    """A running `sfu agent serve`: (socket, pid)."""
    sock = work / "agent.sock"
    with open(work / "agent.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sfupdate.cli.main", "agent", "serve",
                                 "--board", str(board), "--socket", str(sock)],
                                stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([sys.executable, "-m", "sfupdate.cli.main", "agent", "status",
                              "--socket", str(sock)], capture_output=True).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start: {(work / 'agent.log').read_text()}")
            time.sleep(0.1)
        yield sock, proc.pid
    finally:
        _stop(proc)


def target_url(base: str, repo: Path) -> str:
    [name] = [p.name for p in (repo / "targets").iterdir()
              if re.fullmatch(r"[0-9a-f]{64}\..*", p.name)]
    return f"{base}targets/{name}"


def time_curl(url: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_update(url: str, repo: Path, sock: Path, work: Path, runs: int) -> tuple[float, int]:
    """Median wall time of `sfu client update` (a fresh client state each run, so each one
    bootstraps the index from the trusted root) and its largest peak RSS in KiB. Every run
    installs the image again into the same inactive slot, as a new trial."""
    samples = []
    for i in range(runs):
        state = work / f"client-state-{i}"
        _, sample, stdout = run_measured(sfu_argv([
            "client", "update", "--repo", url, "--socket", sock,
            "--trusted-root", repo / "metadata" / "1.root.json", "--state-dir", state]))
        if "installed sequence 2" not in stdout:
            raise RuntimeError(f"the client installed nothing: {stdout.strip()}")
        samples.append(sample)
        shutil.rmtree(state)
    summary = summarise(samples)
    return summary.wall, summary.peak_rss_kib


def time_check(url: str, repo: Path, sock: Path, work: Path, runs: int) -> float:
    """Median wall time of `sfu client check` (fresh state): the fixed part of an update,
    i.e. interpreter start-up, index refresh and the agent's status, without the image."""
    times = []
    for i in range(runs):
        state = work / f"check-state-{i}"
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "sfupdate.cli.main", "client", "check", "--repo", url,
             "--socket", str(sock), "--trusted-root", str(repo / "metadata" / "1.root.json"),
             "--state-dir", str(state)], capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if result.returncode != 100:
            raise RuntimeError(f"client check failed ({result.returncode}): {result.stderr}")
        shutil.rmtree(state)
    return statistics.median(times)


def run(size_mib: int = 256, runs: int = 3) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sfu-bench-delivery-") as tmp:
        work = Path(tmp)
        repo, board = build_world(work, size_mib * MIB)
        file_size = sum(p.stat().st_size for p in (repo / "targets").iterdir())
        with agent(board, work) as (sock, agent_pid), sfu_serve(repo, work) as serve_url, \
                nginx(repo, work) as nginx_url:
            agent_idle = vm_hwm_kib(agent_pid)
            for name, base in (("sfu serve", serve_url), ("nginx", nginx_url)):
                if base is None:
                    rows.append([name, "not installed", "", "", "", "", "", ""])
                    continue
                curl = time_curl(target_url(base, repo), runs)
                update, client_rss = time_update(base, repo, sock, work, runs)
                fixed = time_check(base, repo, sock, work, runs)
                rows.append([name, f"{update:.2f}", f"{fixed:.2f}", f"{curl:.2f}",
                             f"{update / curl:.1f}", f"{(update - fixed) / curl:.1f}",
                             f"{file_size / MIB / update:.0f}", f"{client_rss / 1024:.0f}"])
            agent_peak = vm_hwm_kib(agent_pid)
    header = ["server", "full update s (median)", "of which fixed s", "curl -o /dev/null s",
              "ratio", "ratio without fixed", "update MiB/s", "client peak RSS MiB"]
    return (f"### Delivery: full update of a {size_mib} MiB image over loopback HTTP "
            f"({machine()}, {runs} runs)\n\n"
            + table(header, rows)
            + f"\n\nAgent peak RSS: {agent_peak / 1024:.0f} MiB over all runs "
            f"(idle {agent_idle / 1024:.0f} MiB).\n\n"
            "full update = one `sfu client update` process: interpreter start-up, TUF index "
            "refresh, download, hash against the index, IPC to the running agent, which "
            "authenticates the SFUI, writes the payload into the slot while hashing it, "
            "fsyncs it and records the trial;\n"
            "fixed = `sfu client check` (start-up, index refresh, agent status: what an update "
            "costs whatever the image size);\n"
            "ratio = full update time / curl time for the same file from the same server in "
            "the same run; without fixed: (update - fixed) / curl.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="image size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(run(args.size_mib, args.runs))


if __name__ == "__main__":
    main()
