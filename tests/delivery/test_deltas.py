"""Deltas in the repository (issue 13): `sfu repo add --deltas N` publishes, beside a full
image, deltas from its predecessors, listed with their base digests; the client installs the
delta whose base the device runs, says what it saved, and falls back to the full image when no
delta fits or the agent refuses one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sfupdate import errors, keys
from sfupdate.authoring.repo.deltas import add_deltas
from sfupdate.cli.main import main
from sfupdate.keys.files import FileSigner
from sfupdate.richos.client import FileSource, update
from tests.conftest import SignImage
from tests.delivery.device import Device
from tests.delivery.netsim import RepoWorld
from tests.world import FIRMWARE_V1

FIRMWARE_V2 = FIRMWARE_V1[:4000] + b"release two " * 400 + FIRMWARE_V1[4000:]


def publish_with_delta(world: RepoWorld, sign_image: SignImage, signer: FileSigner,
                       base: bytes) -> tuple[Path, Path]:
    """Full images of `base` (sequence 1) and v2, and a delta of v2 from `base`."""
    one = sign_image(payload=base, sequence=1, version_text="1.0")
    two = sign_image(payload=FIRMWARE_V2, sequence=2, version_text="2.0")
    world.repo.add(one)
    full = world.repo.add(two)
    [delta] = add_deltas(world.repo, full, 1, signer)
    assert delta.delta_base == hashlib.sha256(base).hexdigest()
    assert delta.length < full.length // 3
    world.repo.publish()
    return two, world.repo.target_path(delta)


def test_the_client_installs_the_delta_from_the_running_image_and_says_what_it_saved(
        world: RepoWorld, device: Device, sign_image: SignImage,
        es256_signer: FileSigner) -> None:
    two, _ = publish_with_delta(world, sign_image, es256_signer, FIRMWARE_V1)
    log: list[str] = []
    result = update(world.index(FileSource(world.dir)), device, log=log.append)
    assert result.chosen is not None and result.chosen.delta_base is not None
    assert result.saved == two.stat().st_size - result.chosen.length > 0
    assert any("is a delta from the running image" in line for line in log)
    device.update_to(2)  # the rebuilt image boots and is confirmed
    assert device.status().running_digest == hashlib.sha256(FIRMWARE_V2).hexdigest()


def test_a_device_not_running_the_base_gets_the_full_image(
        world: RepoWorld, device: Device, sign_image: SignImage,
        es256_signer: FileSigner) -> None:
    publish_with_delta(world, sign_image, es256_signer, b"another first release " * 500)
    result = update(world.index(FileSource(world.dir)), device)
    assert result.chosen is not None and result.chosen.delta_base is None
    assert (result.saved, result.skipped) == (0, ())
    device.update_to(2)


def test_a_delta_the_agent_refuses_falls_back_to_the_full_image(
        world: RepoWorld, device: Device, sign_image: SignImage,
        es256_signer: FileSigner) -> None:
    publish_with_delta(world, sign_image, es256_signer, FIRMWARE_V1)
    slot_a = device.agent.board / "slots" / "A.img"
    data = bytearray(slot_a.read_bytes())
    data[10] ^= 1  # the Rich OS scribbled on the running slot: the delta rebuilds garbage
    slot_a.write_bytes(bytes(data))
    result = update(world.index(FileSource(world.dir)), device)
    [skipped] = result.skipped
    assert skipped.candidate.delta_base is not None
    assert isinstance(skipped.error, errors.PayloadDigestError)
    assert result.chosen is not None and result.chosen.delta_base is None
    assert result.installed is not None and result.installed.sequence == 2


def test_repo_add_deltas_publishes_them_beside_the_full_image(
        tmp_path: Path, world: RepoWorld, sign_image: SignImage,
        capsys: pytest.CaptureFixture[str]) -> None:
    world.repo.add(sign_image(payload=FIRMWARE_V1, sequence=1))
    two = sign_image(payload=FIRMWARE_V2, sequence=2)
    assert main(["repo", "add", str(world.dir), str(two), "--deltas", "2"]) == 2
    assert "--deltas needs --key" in capsys.readouterr().err
    key, public = tmp_path / "author.pem", tmp_path / "author.pub"
    private = keys.generate_private_key("ES256")
    keys.write_private_key(private, key)
    public.write_bytes(keys.public_pem(private.public_key()))
    assert main(["repo", "add", str(world.dir), str(two), "--deltas", "2", "--key", str(key),
                 "--trust", str(public), "--json"]) == 0
    staged = json.loads(capsys.readouterr().out)["staged"]
    assert [e["delta_base"] for e in staged] == [None, hashlib.sha256(FIRMWARE_V1).hexdigest()]
    assert staged[1]["name"] == two.name.removesuffix(".sfui") + ".delta-from-1.sfui"
    world.repo.publish()
    listed = {c.name: c for c in world.index(FileSource(world.dir)).refresh()}
    assert listed[staged[1]["name"]].delta_base == staged[1]["delta_base"]
