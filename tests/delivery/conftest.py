"""Fixtures for the delivery tests: a repository world, hostile servers, and the device: a real
agent process on a provisioned sim board (the `agent` fixture of tests/conftest.py)."""

from __future__ import annotations

import functools
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sfupdate import keys
from sfupdate.authoring.repo import RepoServer
from sfupdate.formats.sfui import TrustedKey
from tests.agent.support import RunningAgent
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import HostileServer, RepoWorld


@pytest.fixture
def repo_key(tmp_path: Path) -> Path:
    path = tmp_path / "repo-key.pem"
    keys.write_private_key(keys.generate_private_key("ES256"), path)
    return path


@pytest.fixture
def firmware_pub(tmp_path: Path, es256_trusted: TrustedKey) -> Path:
    """The public PEM of the key `sign_image` signs with (for `--firmware-key`, `--trust`)."""
    path = tmp_path / "firmware.pub"
    path.write_bytes(keys.public_pem(es256_trusted.public_key))
    return path


@pytest.fixture
def world(tmp_path: Path, repo_key: Path, sign_image: SignImage,
          es256_trusted: TrustedKey) -> RepoWorld:
    """A repository whose firmware key is the one `sign_image` signs with."""
    return RepoWorld(tmp_path / "world", repo_key, sign_image, [es256_trusted])


@pytest.fixture
def device(agent: RunningAgent) -> Device:
    """The device the client updates: sequence 1 confirmed in slot A, floor 1."""
    return Device(agent)


@pytest.fixture
def hostile() -> Iterator[Callable[[Path], HostileServer]]:
    """hostile(root) -> a started HostileServer serving root; all are stopped afterwards."""
    servers: list[HostileServer] = []

    def start(root: Path) -> HostileServer:
        servers.append(HostileServer(root))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dev_server() -> Iterator[Callable[[Path], RepoServer]]:
    """dev_server(root) -> a started `sfu serve` server; its log lines in server.lines."""
    started: list[tuple[RepoServer, threading.Thread]] = []

    def start(root: Path) -> RepoServer:
        lines: list[str] = []
        server = RepoServer(root, "127.0.0.1", 0, log=lines.append)
        server.lines = lines  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS server (self-signed certificate) serving b"image" as /fw.sfui: (URL, its
    certificate)."""
    cert, key = _self_signed(tmp_path)
    (tmp_path / "fw.sfui").write_bytes(b"image")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/", cert
    finally:
        server.shutdown()
        server.server_close()
