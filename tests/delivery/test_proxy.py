"""The client behind a proxy, a real tinyproxy (Debian `tinyproxy`) on loopback: `http_proxy`
carries plain HTTP in the absolute form, `https_proxy` tunnels HTTPS with CONNECT (the
repository's certificate is still the one checked), the proxy's credentials (user:password in
its URL) are sent to it, and `no_proxy` bypasses it. A whole update goes through it."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.authoring.repo import RepoServer
from sfupdate.richos.client import HttpSource, fetch, update
from tests.delivery.device import Device
from tests.delivery.netsim import FAST, RepoWorld

USER, PASSWORD = "device-7", "s3cret-7"


@dataclass
class Proxy:
    url: str
    log: Path

    def saw(self, needle: str) -> bool:
        return needle in self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Proxy]:
    """tinyproxy on a free port of 127.0.0.1, asking for basic credentials, logging at Info."""
    exe = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy"
                                        if os.path.exists("/usr/bin/tinyproxy") else None)
    if exe is None:
        if os.environ.get("CI"):
            raise AssertionError("tinyproxy is not installed; CI must run this test "
                                 "(apt-get install tinyproxy)")
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy); CI runs this test")
    port = _free_port()
    log = tmp_path / "tinyproxy.log"
    config = tmp_path / "tinyproxy.conf"
    config.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n"
                      f'LogFile "{log}"\nLogLevel Info\nMaxClients 20\n'
                      f"BasicAuth {USER} {PASSWORD}\n")
    process = subprocess.Popen([exe, "-d", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, f"tinyproxy exited: {log.read_text()}"
            assert time.monotonic() < deadline, "tinyproxy did not start"
            time.sleep(0.05)
        yield Proxy(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}", log)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch, tinyproxy: Proxy) -> Proxy:
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", tinyproxy.url)
    monkeypatch.setenv("https_proxy", tinyproxy.url)
    return tinyproxy


def test_an_update_goes_through_the_proxy(world: RepoWorld, device: Device, proxied: Proxy,
                                          dev_server: Callable[[Path], RepoServer]) -> None:
    """The index refresh and the image, through the proxy (which asks for credentials: the
    client sends those of the proxy's URL)."""
    world.publish(world.image(2))
    server = dev_server(world.dir)
    result = update(world.index(server.url), device)
    assert result.installed is not None and result.installed.sequence == 2
    assert proxied.saw(f"GET {server.url}") and proxied.saw("timestamp.json")
    assert proxied.saw(".sfui")  # the image came through it too


def test_https_is_tunnelled_and_its_certificate_still_checked(
        https_server: tuple[str, Path], proxied: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert b"".join(fetch(HttpSource(url, 2.0, 2.0), "fw.sfui", 5, FAST)) == b"image"
    port = url.rstrip("/").rsplit(":", 1)[1]
    assert proxied.saw(f"CONNECT 127.0.0.1:{port}")


def test_wrong_proxy_credentials_are_refused_by_the_proxy(
        tinyproxy: Proxy, world: RepoWorld, monkeypatch: pytest.MonkeyPatch,
        dev_server: Callable[[Path], RepoServer]) -> None:
    world.publish(world.image(2))
    server = dev_server(world.dir)
    monkeypatch.setenv("http_proxy", tinyproxy.url.replace(USER, "intruder"))
    source = HttpSource(server.url, 2.0, 2.0)
    with pytest.raises(errors.DownloadError, match=r"HTTP 40[17]"):
        source.size("metadata/timestamp.json")


def test_no_proxy_goes_direct(world: RepoWorld, proxied: Proxy, monkeypatch: pytest.MonkeyPatch,
                              dev_server: Callable[[Path], RepoServer]) -> None:
    world.publish(world.image(2))
    server = dev_server(world.dir)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert HttpSource(server.url, 2.0, 2.0).size("metadata/timestamp.json") > 0
    assert not proxied.saw(server.url)


def test_the_proxy_credentials_are_the_urls_decoded_user_and_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sfupdate.richos.client.http import _proxy_for

    monkeypatch.setenv("http_proxy", "http://dev%40ice:pa%3Ass%2Fword@127.0.0.1:3128")
    proxy = _proxy_for("http", "updates.example.com")
    assert proxy is not None and (proxy.host, proxy.port) == ("127.0.0.1", 3128)
    expected = base64.b64encode(b"dev@ice:pa:ss/word").decode()
    assert proxy.headers == {"Proxy-Authorization": f"Basic {expected}"}


def test_a_proxy_other_than_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfupdate.richos.client.http import _proxy_for

    monkeypatch.setenv("https_proxy", "socks5://127.0.0.1:1080")
    with pytest.raises(errors.DownloadError, match="only an http://host:port proxy"):
        _proxy_for("https", "updates.example.com")
