"""`sfu serve` speaks enough HTTP for resumable downloads; nginx serves the same tree."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sfupdate.authoring.repo import RepoServer
from sfupdate.authoring.repo.server import parse_range
from sfupdate.richos.client import check, update
from tests.delivery.device import Device
from tests.delivery.netsim import RepoWorld, target_path

DevServer = Callable[[Path], RepoServer]


@pytest.fixture
def served(tmp_path: Path, dev_server: DevServer) -> tuple[RepoServer, bytes]:
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    data = bytes(range(256)) * 40
    (root / "sub" / "file.bin").write_bytes(data)
    (root / ".sfu").mkdir()
    (root / ".sfu" / "repo.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("outside")
    return dev_server(root), data


def test_get_and_head_report_length_and_validators(served: tuple[RepoServer, bytes]) -> None:
    server, data = served
    got = httpx.get(server.url + "sub/file.bin")
    head = httpx.head(server.url + "sub/file.bin")
    assert got.status_code == head.status_code == 200
    assert got.content == data and head.content == b""
    for response in (got, head):
        assert response.headers["Content-Length"] == str(len(data))
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["ETag"] and response.headers["Last-Modified"]


def test_range_request_gets_206_with_content_range(served: tuple[RepoServer, bytes]) -> None:
    server, data = served
    url = server.url + "sub/file.bin"
    r = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    r = httpx.get(url, headers={"Range": "bytes=10000-"})
    assert r.status_code == 206 and r.content == data[10000:]
    r = httpx.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]


def test_unsatisfiable_range_gets_416(served: tuple[RepoServer, bytes]) -> None:
    server, data = served
    r = httpx.get(server.url + "sub/file.bin", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_conditional_requests_get_304(served: tuple[RepoServer, bytes]) -> None:
    server, _ = served
    url = server.url + "sub/file.bin"
    first = httpx.get(url)
    assert httpx.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    since = first.headers["Last-Modified"]
    assert httpx.get(url, headers={"If-Modified-Since": since}).status_code == 304
    # If-Range with a stale validator: the whole file, not a range of a different version
    r = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200


@pytest.mark.parametrize("path", [".sfu/repo.json", "..%2Fsecret.txt", "sub/../../secret.txt",
                                  "sub", "", "missing.bin", "sub/%2e%2e/%2e%2e/secret.txt"])
def test_private_outside_and_missing_paths_are_404(served: tuple[RepoServer, bytes],
                                                   path: str) -> None:
    server, _ = served
    assert httpx.get(server.url + path).status_code == 404


def test_one_log_line_per_request(served: tuple[RepoServer, bytes]) -> None:
    server, _ = served
    httpx.get(server.url + "sub/file.bin", headers={"Range": "bytes=0-9"})
    httpx.head(server.url + "missing")
    lines: list[str] = server.lines  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5  # the line is written just after the response is sent
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(lines) == 2
    assert '"GET /sub/file.bin HTTP/1.1" 206 10' in lines[0]
    assert '"HEAD /missing HTTP/1.1" 404' in lines[1]


def test_range_parsing_edge_cases() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-100", 10) == (0, 9)
    assert parse_range("bytes=10-", 10) is False
    assert parse_range("bytes=-0", 10) is False
    assert parse_range("bytes=0-1,3-4", 10) is None  # several ranges: whole file
    assert parse_range("bytes=5-2", 10) is None
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=a-b", 10) is None


def test_device_updates_from_the_dev_server(world: RepoWorld, dev_server: DevServer,
                                            device: Device) -> None:
    image = world.image(2)
    world.publish(image)
    server = dev_server(world.dir)
    result = update(world.index(server.url), device)
    assert result.installed is not None and result.installed.sequence == 2
    device.assert_trial(2)
    lines: list[str] = server.lines  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while not any(target_path(image) in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(target_path(image) in line and '" 200 ' in line for line in lines)


# --- nginx -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


NGINX_CONF = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ application/json json; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location ~ /\\. {{ deny all; }}
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """nginx(root) -> base URL of a real nginx serving root; stopped afterwards."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed, and CI must run the nginx test (.ci/run "
                        "installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(root: Path) -> str:
        run = tmp_path / "nginx"
        run.mkdir()
        port = _free_port()
        conf = run / "nginx.conf"
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, tmp=run, port=port, root=root))
        proc = subprocess.Popen([binary, "-p", str(run), "-e", str(run / "error.log"),
                                 "-c", str(conf), "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited: {proc.stderr.read().decode()}"
                                     if proc.stderr else "nginx exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return f"http://127.0.0.1:{port}/"
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start listening within 10 s")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_device_updates_from_nginx(world: RepoWorld, nginx: Callable[[Path], str],
                                   device: Device) -> None:
    """The whole device story from a stock nginx serving the tree: the client updates the
    real agent, the trial boots healthy and is confirmed; the floor rises."""
    image = world.image(2)
    world.publish(world.image(1), image)
    url = nginx(world.dir)
    result = update(world.index(url), device)
    assert result.installed is not None and result.installed.sequence == 2
    device.assert_trial(2)
    device.update_to(2)
    assert check(world.index(url), device).available is None
    # nginx honours Range on the same tree, which is what resume relies on
    r = httpx.get(url + target_path(image).lstrip("/"), headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == image.read_bytes()[10:20]
    assert httpx.get(url + ".sfu/repo.json").status_code in (403, 404)
