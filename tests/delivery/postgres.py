"""A throw-away PostgreSQL server for the fleet test: `initdb` in a temporary directory, started
with `pg_ctl` on 127.0.0.1 as an unprivileged user (`postgres` when the tests run as root,
which PostgreSQL refuses), trust authentication, no fsync; removed again by `stop()`."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> bool:
    return _binary("initdb") is not None and _binary("pg_ctl") is not None


class Postgres:
    def __init__(self) -> None:
        initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        assert initdb and self.pg_ctl, "PostgreSQL is not installed"
        self.dir = Path(tempfile.mkdtemp(prefix="sfu-pg-"))  # short: it holds the socket
        self.data = self.dir / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "sfu", "-E", "UTF8",
                  "--no-sync")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                  "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                        "-c fsync=off -c max_connections=200", "start")
        self._run(str(Path(self.pg_ctl).with_name("createdb")), "-h", "127.0.0.1", "-p",
                  str(self.port), "-U", "sfu", "goosebit")
        self.uri = f"postgres://sfu:unused@127.0.0.1:{self.port}/goosebit"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True,
                              timeout=120, cwd=self.dir)
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}{done.stderr}"

    def stop(self) -> None:
        self._run(str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
