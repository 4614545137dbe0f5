"""Cancel actions (hawkBit DDI `cancelAction`), which gooseBit does not send: a minimal DDI server
on 127.0.0.1 speaks that part of hawkBit's API, in front of a real agent. A cancel is accepted
while the update has not started writing into the device, and rejected once it has."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sfupdate.richos.client.ddi import DdiClient, DdiConfig
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import FAST

BASE = "/DEFAULT/controller/v1/dev"


class Hawkbit:
    """Answers the controller base with the links in `links`; records every request body."""

    def __init__(self, image: bytes) -> None:
        self.image, self.links = image, ["deploymentBase"]
        self.posts: list[tuple[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def reply(self, body: bytes, kind: str = "application/json") -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = f"http://127.0.0.1:{owner.port}{BASE}"
                answers: dict[str, Any] = {
                    BASE: {"config": {"polling": {"sleep": "00:00:05"}}, "_links": {
                        name: {"href": f"{url}/{path}"} for name, path in (
                            ("deploymentBase", "deploymentBase/42"),
                            ("cancelAction", "cancelAction/7")) if name in owner.links}},
                    f"{BASE}/cancelAction/7": {"id": "7", "cancelAction": {"stopId": "42"}},
                    f"{BASE}/deploymentBase/42": {"id": "42", "deployment": {
                        "download": "forced", "update": "forced", "chunks": [{
                            "part": "os", "version": "2", "name": "fw", "artifacts": [{
                                "filename": "fw.sfui", "size": len(owner.image),
                                "_links": {"download": {"href": f"{url}/fw.sfui"}}}]}]}}}
                if self.path == f"{BASE}/fw.sfui":
                    self.reply(owner.image, "application/octet-stream")
                else:
                    self.reply(json.dumps(answers[self.path]).encode())

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                owner.posts.append((self.path, json.loads(self.rfile.read(length))))
                self.reply(b"{}")

            do_PUT = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def executions(self, path: str) -> list[str]:
        return [body["status"]["execution"] for p, body in self.posts if p == path]


@pytest.fixture
def hawkbit(sign_image: SignImage) -> Iterator[Hawkbit]:
    server = Hawkbit(sign_image(b"firmware v2 " * 500, sequence=2).read_bytes())
    yield server
    server.server.shutdown()
    server.server.server_close()


def client(hawkbit: Hawkbit, device: Device, tmp_path: Path) -> DdiClient:
    return DdiClient(DdiConfig(f"http://127.0.0.1:{hawkbit.port}", "DEFAULT", "dev"), device,
                     tmp_path / "state", FAST)


def test_a_cancel_before_the_install_is_accepted(hawkbit: Hawkbit, device: Device,
                                                 tmp_path: Path) -> None:
    hawkbit.links = ["cancelAction", "deploymentBase"]
    cycle = client(hawkbit, device, tmp_path).cycle()
    assert cycle.installed is None and cycle.message == "action 42 was cancelled; not installed"
    assert hawkbit.executions(f"{BASE}/cancelAction/7/feedback") == ["closed"]
    assert hawkbit.executions(f"{BASE}/deploymentBase/42/feedback") == []
    assert device.sessions == 0
    device.assert_unchanged()


def test_a_cancel_after_the_install_is_rejected(hawkbit: Hawkbit, device: Device,
                                                tmp_path: Path) -> None:
    ddi = client(hawkbit, device, tmp_path)
    assert ddi.cycle().installed is not None
    hawkbit.links = ["cancelAction"]
    ddi.cycle()
    assert hawkbit.executions(f"{BASE}/cancelAction/7/feedback") == ["rejected"]
    device.assert_trial(2)
