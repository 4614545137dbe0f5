"""gooseBit (PyPI `goosebit`, a hawkBit DDI server in Python), run unmodified on 127.0.0.1 for
the DDI tests: its database created by `aerich upgrade` (its documented set-up), served by
uvicorn on a socket the test bound, administered through its REST API as an operator would,
except for adding an SFUI as software (see goosebit_admin.py for why and how).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.delivery.servers import need

ADMIN = Path(__file__).with_name("goosebit_admin.py")


class GooseBit:
    """One gooseBit server; `db_uri` defaults to SQLite in `base`; `settings` are more of its
    GOOSEBIT_* environment variables."""

    def __init__(self, base: Path, db_uri: str | None = None, poll: str = "00:00:01",
                 settings: dict[str, str] | None = None) -> None:
        package = need("goosebit")
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.env = {**os.environ,
                    "GOOSEBIT_DB_URI": db_uri or f"sqlite:///{base / 'db.sqlite3'}",
                    "GOOSEBIT_ARTIFACTS_DIR": str(base / "artifacts"),
                    "GOOSEBIT_POLL_TIME": poll, **(settings or {})}
        migrations = Path(package).parent / "db" / "migrations"
        (base / "pyproject.toml").write_text(
            f'[tool.aerich]\ntortoise_orm = "goosebit.db.config.TORTOISE_CONF"\n'
            f'location = "{migrations}"\nsrc_folder = "./."\n')
        subprocess.run([sys.executable, "-m", "aerich", "upgrade"], cwd=base, env=self.env,
                       check=True, capture_output=True, timeout=120)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self.log = base / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "goosebit:app", "--fd",
                 str(listener.fileno()), "--log-level", "warning", "--no-access-log"],
                pass_fds=[listener.fileno()], cwd=base, env=self.env, stdout=out, stderr=out)
        listener.close()
        self.http = httpx.Client(base_url=self.url, timeout=30)
        reply = self.http.post("/setup", data={"username": "admin@example.com",
                                               "password": "a test password"})
        assert reply.status_code == 200, self.log.read_text()
        self.http.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def add_software(self, sfui: Path, version: str, hw_model: str) -> int:
        """Register `sfui` (see goosebit_admin.py); returns the software id."""
        done = subprocess.run([sys.executable, str(ADMIN), str(sfui), version, hw_model],
                              cwd=self.base, env=self.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    def create_device(self, device_id: str, auth_token: str) -> None:
        reply = self.http.put("/api/v1/devices", json={"devices": [device_id],
                                                       "auth_token": auth_token})
        assert reply.status_code == 200, reply.text

    def assign(self, device_id: str, software_id: int) -> None:
        reply = self.http.patch("/api/v1/devices", json={"devices": [device_id],
                                                         "software": str(software_id)})
        assert reply.status_code == 200, reply.text

    def rollout(self, software_id: int, feed: str = "default") -> None:
        reply = self.http.put("/api/v1/rollouts", json={"name": f"rollout {software_id}",
                                                        "feed": feed,
                                                        "software_id": software_id})
        assert reply.status_code == 200, reply.text

    def rollouts(self) -> list[dict[str, Any]]:
        reply = self.http.get("/api/v1/rollouts")
        assert reply.status_code == 200, reply.text
        return list(reply.json()["rollouts"])

    def device(self, device_id: str) -> dict[str, Any]:
        reply = self.http.get("/api/v1/devices")
        assert reply.status_code == 200, reply.text
        return next(d for d in reply.json()["devices"] if d["id"] == device_id)

    def device_log(self, device_id: str) -> str:
        reply = self.http.get(f"/api/v1/devices/{device_id}/log")
        assert reply.status_code == 200, reply.text
        return str(reply.json().get("log") or "")

    def peak_rss_kib(self) -> int:
        """The server process's peak resident set (VmHWM), while it runs."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def wait_for(condition: Any, timeout: float = 30, what: str = "condition",
             every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
