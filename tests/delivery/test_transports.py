"""TFTP and FTP sources against real servers on 127.0.0.1 (tftpy's, pyftpdlib), delivering into
a real agent; the `--repo` scheme picks the source, and an unknown scheme is a usage error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate.cli.main import main
from sfupdate.errors import DownloadError, RemoteFileNotFoundError, UsageError
from sfupdate.richos.client import TransferPolicy, fetch, open_source, update
from sfupdate.richos.client.ftp import FtpSource
from sfupdate.richos.client.sources import FileSource
from sfupdate.richos.client.tftp import TftpSource
from tests.delivery.device import Device
from tests.delivery.netsim import FAST, RepoWorld
from tests.delivery.servers import FtpServer, TftpServer


@pytest.fixture
def tftp_server(world: RepoWorld) -> Iterator[TftpServer]:
    server = TftpServer(world.publish(world.image(2)))
    yield server
    server.stop()


def test_update_over_tftp(world: RepoWorld, tftp_server: TftpServer, device: Device) -> None:
    source = TftpSource(tftp_server.url, FAST.read_timeout)
    result = update(world.index(source), device)
    assert result.installed is not None and result.installed.sequence == 2
    assert device.sessions == 1
    device.assert_trial(2)


def test_tftp_size_comes_from_tsize_and_missing_files_are_reported(
        world: RepoWorld, tftp_server: TftpServer) -> None:
    source = TftpSource(tftp_server.url, FAST.read_timeout)
    image = next((world.publishes[-1] / "targets").iterdir())
    assert source.size("metadata/1.root.json") == (
        world.publishes[-1] / "metadata" / "1.root.json").stat().st_size
    with pytest.raises(RemoteFileNotFoundError, match="not found"):
        list(source.open("metadata/nothing.json"))
    # a resumed attempt reads the file again and drops what was delivered
    data = image.read_bytes()
    assert b"".join(source.open(str(image.relative_to(world.publishes[-1])), 1000)) == data[1000:]


def test_a_silent_tftp_server_fails_within_the_policy(tmp_path: Path) -> None:
    """Nobody answers on that UDP port: each attempt gives up after its re-sends, the
    downloader after its retries, all within a bounded time."""
    import socket

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # takes the datagrams, never answers
    try:
        source = TftpSource(f"tftp://127.0.0.1:{sink.getsockname()[1]}/", read_timeout=0.2)
        policy = TransferPolicy(retries=1, backoff=0.01, read_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(DownloadError, match="giving up after 2 attempts"):
            list(fetch(source, "x.sfui", None, policy))
        assert time.monotonic() - started < 5
    finally:
        sink.close()


@pytest.fixture
def ftp_server(world: RepoWorld) -> Iterator[FtpServer]:
    server = FtpServer(world.publish(world.image(2)))
    yield server
    server.stop()


def test_update_over_ftp(world: RepoWorld, ftp_server: FtpServer, device: Device) -> None:
    result = update(world.index(FtpSource(ftp_server.url, 2.0, FAST.read_timeout)), device)
    assert result.installed is not None and result.installed.sequence == 2
    assert ftp_server.rests == []
    device.assert_trial(2)


def test_a_cut_ftp_transfer_resumes_with_rest_in_the_same_session(
        world: RepoWorld, device: Device) -> None:
    image = world.image(2)
    half = image.stat().st_size // 2
    server = FtpServer(world.publish(image), cut_after=half)
    try:
        log: list[str] = []
        source = FtpSource(server.url, 2.0, FAST.read_timeout)
        result = update(world.index(source, log=log.append), device)
    finally:
        server.stop()
    assert result.installed is not None and result.installed.sequence == 2
    assert server.rests == [str(half)]  # asked only for the missing bytes
    assert any("426" in line and f"resuming at byte {half}" in line for line in log)
    assert device.sessions == 1
    device.assert_trial(2)
    assert device.reboot().healthy


def test_ftp_missing_file_and_size(world: RepoWorld, ftp_server: FtpServer) -> None:
    source = FtpSource(ftp_server.url, 2.0, FAST.read_timeout)
    root = world.publishes[-1] / "metadata" / "1.root.json"
    assert source.size("metadata/1.root.json") == root.stat().st_size
    with pytest.raises(RemoteFileNotFoundError, match="550"):
        list(source.open("metadata/nothing.json"))
    with pytest.raises(RemoteFileNotFoundError):
        source.size("metadata/nothing.json")


def test_cli_updates_over_ftp_and_tftp(tmp_path: Path, world: RepoWorld, device: Device,
                                       ftp_server: FtpServer) -> None:
    common = ["--socket", str(device.agent.socket), "--trusted-root", str(world.trusted_root)]
    assert main(["client", "check", "--repo", ftp_server.url, *common,
                 "--state-dir", str(tmp_path / "s1")]) == 100
    tftp = TftpServer(world.publishes[-1])
    try:
        assert main(["client", "update", "--repo", tftp.url, *common,
                     "--state-dir", str(tmp_path / "s2")]) == 0
    finally:
        tftp.stop()
    device.assert_trial(2)


@pytest.mark.parametrize("location, kind", [
    ("http://127.0.0.1:1/repo", "HttpSource"), ("HTTPS://127.0.0.1:1/", "HttpSource"),
    ("tftp://127.0.0.1/repo", "TftpSource"), ("ftp://user:pw@127.0.0.1:2121/r", "FtpSource"),
    ("file:///srv/repo", "FileSource"), ("/srv/repo", "FileSource"),
    ("relative/repo", "FileSource"),
])
def test_the_scheme_picks_the_source(location: str, kind: str) -> None:
    assert type(open_source(location)).__name__ == kind


def test_file_urls_name_local_paths() -> None:
    source = open_source("file:///srv/my%20repo")
    assert isinstance(source, FileSource) and source.root == Path("/srv/my repo")
    with pytest.raises(UsageError, match="local path"):
        open_source("file://elsewhere/srv/repo")


def test_ftp_urls_never_show_the_password() -> None:
    source = open_source("ftp://fw:secret@127.0.0.1:2121/pub")
    assert source.describe("a.sfui") == "ftp://127.0.0.1:2121/pub/a.sfui"


def test_an_unknown_scheme_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["client", "check", "--repo", "gopher://127.0.0.1/repo", "--socket",
                 str(tmp_path / "s"), "--state-dir", str(tmp_path / "state")])
    assert code == UsageError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown URL scheme 'gopher'" in err
    assert not (tmp_path / "state").exists()
