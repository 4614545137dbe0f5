"""The client falls back to the next-best image of the index when the agent refuses the best
one or its download fails after retries, says so, and installs the fallback in a new session
of the real agent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.cli.main import main
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.richos.client import FileSource, update
from tests.delivery.device import Device
from tests.delivery.netsim import HostileServer, RepoWorld, stall_after, target_path

Hostile = Callable[[Path], HostileServer]


def unknown_to_the_device(world: RepoWorld, sequence: int, signer: FileSigner) -> Path:
    """An image the repository admits (told to trust `signer`) but the device does not: e.g.
    a new author key the devices have not been given yet."""
    image = world.image(sequence, signer=signer)
    world.repo.add(image, [TrustedKey(signer.public_key)])
    return image


def test_an_image_the_agent_refuses_falls_back_to_the_next_best(
        world: RepoWorld, device: Device, eddsa_signer: FileSigner) -> None:
    three = unknown_to_the_device(world, 3, eddsa_signer)
    two = world.image(2)
    world.publish(two)
    log: list[str] = []
    result = update(world.index(FileSource(world.dir)), device, log=log.append)
    assert result.check.available is not None and result.check.available.name == three.name
    assert result.chosen is not None and result.chosen.name == two.name
    assert result.installed is not None and result.installed.sequence == 2
    [skipped] = result.skipped
    assert skipped.candidate.name == three.name
    assert isinstance(skipped.error, errors.UnknownKeyError)
    assert log == [f"{three.name} (sequence 3) not installed: {skipped.error}; falling back to "
                   f"{two.name} (sequence 2)"]
    assert device.sessions == 2
    device.assert_trial(2)


def test_an_image_that_fails_to_download_falls_back_to_the_next_best(
        world: RepoWorld, hostile: Hostile, device: Device) -> None:
    two, three = world.image(2), world.image(3)
    server = hostile(world.publish(two, three))
    server.routes[target_path(three)] = stall_after(three.read_bytes(), 1000)
    log: list[str] = []
    result = update(world.index(server.url), device, log=log.append)
    assert result.installed is not None and result.installed.sequence == 2
    [skipped] = result.skipped
    assert isinstance(skipped.error, errors.DownloadError)
    assert "giving up after 3 attempts" in str(skipped.error)
    assert len(server.fetched(target_path(three))) == 3  # its retries ran first
    assert any("falling back to" in line and two.name in line for line in log)
    device.assert_trial(2)


def test_when_every_candidate_fails_the_best_ones_error_is_raised(
        world: RepoWorld, device: Device, eddsa_signer: FileSigner) -> None:
    unknown_to_the_device(world, 3, eddsa_signer)
    unknown_to_the_device(world, 2, eddsa_signer)
    world.repo.publish()
    log: list[str] = []
    with pytest.raises(errors.UnknownKeyError):
        update(world.index(FileSource(world.dir)), device, log=log.append)
    assert len(log) == 2 and log[-1].endswith("no other candidate for this device")
    assert device.sessions == 2
    device.assert_unchanged()


def test_client_update_says_it_fell_back(tmp_path: Path, world: RepoWorld, device: Device,
                                         eddsa_signer: FileSigner,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    three = unknown_to_the_device(world, 3, eddsa_signer)
    world.publish(world.image(2))
    code = main(["client", "update", "--repo", str(world.dir), "--socket",
                 str(device.agent.socket), "--state-dir", str(tmp_path / "state"),
                 "--trusted-root", str(world.trusted_root)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("installed sequence 2 into slot B")
    assert f"sfu: {three.name} (sequence 3) not installed: " in captured.err
    assert "falling back to" in captured.err
    device.assert_trial(2)
