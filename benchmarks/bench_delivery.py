"""Rows "full update" and "fixed part of an update" of the table (benchmarks/paths.py), over
loopback HTTP from `sfu serve` and from nginx (when installed).

A full update is one `sfu client update` process: TUF index refresh (a fresh client state each
run, so each one bootstraps from the trusted root), download, hash against the index, IPC to
the running agent, which authenticates the SFUI, writes the payload into the slot while
hashing it, fsyncs it and records the trial. Its limit is max(curl, H, W), with curl the
same file from the same server in the same run. The fixed part is `sfu client check`:
start-up, index refresh and the agent's status, what an update costs whatever the image size.
The CPU time and peak RSS of the agent and of the server count with the client's.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import Server, measure, sfu_argv, watching
from paths import Goal, Row, row

from world import World, children, stop, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@contextmanager
def sfu_serve(repo: Path, work: Path) -> Iterator[tuple[str, dict[str, Server]]]:
    """`sfu serve` on the repository: (base URL, its process by name)."""
    port, log = _free_port(), work / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(sfu_argv(["serve", repo, "--port", str(port)]),
                                stdout=out, stderr=out)
    try:
        wait_until(lambda: _listening(port), proc, log)
        yield f"http://127.0.0.1:{port}/", {"sfu serve": Server(proc.pid)}
    finally:
        stop(proc)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)


@contextmanager
def nginx(repo: Path, work: Path) -> Iterator[tuple[str, dict[str, Server]]]:
    """nginx (one worker, sendfile) on the repository: (base URL, its worker by name)."""
    binary = nginx_binary()
    assert binary is not None
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
        wait_until(lambda: _listening(port), proc, run / "error.log")
        workers = {f"nginx worker {i}" if i else "nginx worker": Server(pid)
                   for i, pid in enumerate(children(proc.pid))}
        yield f"http://127.0.0.1:{port}/", workers
    finally:
        stop(proc)


def target_url(base: str, repo: Path) -> str:
    [name] = [p.name for p in (repo / "targets").iterdir()
              if re.fullmatch(r"[0-9a-f]{64}\..*", p.name)]
    return f"{base}targets/{name}"


def _installed(stdout: str) -> None:
    if "installed sequence 2" not in stdout:
        raise RuntimeError(f"the client installed nothing: {stdout.strip()}")


def rows(world: World) -> list[Row]:
    servers = [("sfu serve", sfu_serve)]
    if nginx_binary() is not None:
        servers.append(("nginx", nginx))
    out: list[Row] = []
    fixed_rows: list[Row] = []
    state = world.work / "client-state"
    for name, server in servers:
        with server(world.repo, world.work) as (base, processes):
            client = ["--repo", base, "--socket", world.socket, "--trusted-root",
                      world.repo / "metadata" / "1.root.json", "--state-dir", state]
            curl = measure(["curl", "-sf", "-o", "/dev/null", target_url(base, world.repo)],
                           world.runs)
            watched = {"agent": world.agent, **processes}
            with watching(watched, world.runs) as fixed_use:
                fixed = measure(sfu_argv(["client", "check", *client]), world.runs,
                                before=lambda: shutil.rmtree(state, ignore_errors=True),
                                expect=100)
            with watching(watched, world.runs) as update_use:
                update = measure(sfu_argv(["client", "update", *client]), world.runs,
                                 before=lambda: shutil.rmtree(state, ignore_errors=True),
                                 check_output=_installed)
        limits = {"curl": curl.wall, **world.limits("H", "W")}
        out.append(row(f"full update via {name}", update, limits, Goal(ratio=1.3),
                       size=world.size, servers_cpu=update_use.cpu_per_run,
                       servers_rss=update_use.rss_kib, fixed=fixed.wall))
        fixed_rows.append(row(f"fixed part of an update via {name} (`sfu client check`)",
                              fixed, world.limits("start"), Goal(seconds=0.3),
                              servers_cpu=fixed_use.cpu_per_run,
                              servers_rss=fixed_use.rss_kib))
    if nginx_binary() is None:
        out.append(row("full update via nginx", None, {}, Goal(ratio=1.3),
                       note="nginx is not installed"))
    return out + fixed_rows

