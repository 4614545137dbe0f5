"""Compressed and delta SFUIs through a real agent process (issue 13): the slot receives the
image the manifest signs, a delta applies only on the image secure storage recorded as its
base, and hostile encodings never yield a trial."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zstandard

from sfupdate.authoring.author import ImageSpec, build_manifest, sign_firmware
from sfupdate.authoring.author.delta import encode_block, patch_bytes
from sfupdate.authoring.author.encoded import sign_compressed, sign_delta
from sfupdate.errors import DeltaBaseError, PatchError, PayloadDigestError, PayloadTooLongError
from sfupdate.formats.delta.patch import CODEC_ZSTD
from sfupdate.formats.sfui.encoding import Compressed, Delta, PayloadEncoding
from sfupdate.keys.files import FileSigner
from tests.agent.support import RunningAgent, file_chunks
from tests.device_world import envelope
from tests.world import CLASS, FIRMWARE_V1, VENDOR, reboot

FIRMWARE_V2 = FIRMWARE_V1[:5000] + b"a new feature " * 300 + FIRMWARE_V1[5000:]


def install_file(agent: RunningAgent, path: Path) -> object:
    return agent.client().install(file_chunks(path), size=path.stat().st_size)


def slot_bytes(agent: RunningAgent, slot: str, size: int) -> bytes:
    return (agent.board / "slots" / f"{slot}.img").read_bytes()[:size]


@pytest.fixture
def v1_sfui(tmp_path: Path, es256_signer: FileSigner) -> Path:
    """An SFUI of the image the provisioned device runs (the delta's base)."""
    (tmp_path / "v1.bin").write_bytes(FIRMWARE_V1)
    sign_firmware(tmp_path / "v1.bin", tmp_path / "v1.sfui", es256_signer,
                  ImageSpec(1, VENDOR, CLASS))
    return tmp_path / "v1.sfui"


def sign_encoded(tmp_path: Path, signer: FileSigner, image: bytes, base: Path | None,
                 name: str = "v2") -> Path:
    (tmp_path / f"{name}.bin").write_bytes(image)
    out = tmp_path / f"{name}.sfui"
    spec = ImageSpec(2, VENDOR, CLASS)
    if base is None:
        sign_compressed(tmp_path / f"{name}.bin", out, signer, spec)
    else:
        sign_delta(tmp_path / f"{name}.bin", base, out, signer, spec)
    return out


def hostile(signer: FileSigner, image: bytes, payload: bytes,
            encoding: PayloadEncoding) -> bytes:
    """A signed SFUI for `image` whose payload is whatever the attacker (or a broken tool)
    put there."""
    manifest = build_manifest(ImageSpec(2, VENDOR, CLASS), hashlib.sha256(image).digest(),
                              len(image), None, encoding=encoding).encode()
    return envelope(manifest, payload, signer)


def assert_no_trial_and_v1_intact(agent: RunningAgent) -> None:
    status = agent.client().status()
    assert status.trial_slot is None
    assert (status.running_slot, status.running_sequence) == ("A", 1)
    assert slot_bytes(agent, "A", len(FIRMWARE_V1)) == FIRMWARE_V1


def test_a_compressed_image_is_decompressed_into_the_slot_and_boots(
        agent: RunningAgent, tmp_path: Path, es256_signer: FileSigner) -> None:
    image = sign_encoded(tmp_path, es256_signer, FIRMWARE_V2, None)
    assert image.stat().st_size < len(FIRMWARE_V2) // 4
    install_file(agent, image)
    status = agent.client().status()
    assert (status.trial_slot, status.slots["B"].digest) == (
        "B", hashlib.sha256(FIRMWARE_V2).hexdigest())
    assert slot_bytes(agent, "B", len(FIRMWARE_V2)) == FIRMWARE_V2
    assert reboot(agent.board).slot == "B"  # stage 2 verifies the slot's decompressed image


def test_a_delta_on_its_base_rebuilds_the_image_in_the_inactive_slot_and_boots(
        agent: RunningAgent, tmp_path: Path, es256_signer: FileSigner, v1_sfui: Path) -> None:
    image = sign_encoded(tmp_path, es256_signer, FIRMWARE_V2, v1_sfui)
    assert image.stat().st_size < len(FIRMWARE_V2) // 4
    install_file(agent, image)
    assert slot_bytes(agent, "B", len(FIRMWARE_V2)) == FIRMWARE_V2
    assert slot_bytes(agent, "A", len(FIRMWARE_V1)) == FIRMWARE_V1  # the base is only read
    assert reboot(agent.board).slot == "B"
    agent.client().confirm()
    assert agent.client().status().running_sequence == 2


def test_a_delta_for_another_base_is_refused_naming_the_base_it_needs(
        agent: RunningAgent, tmp_path: Path, es256_signer: FileSigner) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"some other release " * 600)
    sign_firmware(other, tmp_path / "other.sfui", es256_signer, ImageSpec(1, VENDOR, CLASS))
    image = sign_encoded(tmp_path, es256_signer, FIRMWARE_V2, tmp_path / "other.sfui")
    before = agent.snapshot()
    needed = hashlib.sha256(other.read_bytes()).hexdigest()
    running = hashlib.sha256(FIRMWARE_V1).hexdigest()
    with pytest.raises(DeltaBaseError, match=f"base image sha256:{needed}.*runs sha256:{running}"):
        install_file(agent, image)
    assert agent.snapshot() == before


def test_a_decompression_bomb_never_becomes_a_trial(
        agent: RunningAgent, es256_signer: FileSigner) -> None:
    bomb = zstandard.ZstdCompressor().compress(FIRMWARE_V2 * 20)
    data = hostile(es256_signer, FIRMWARE_V2, bomb, Compressed())
    with pytest.raises(PayloadTooLongError, match="decompression bomb"):
        agent.client().install(iter([data]), size=len(data))
    assert_no_trial_and_v1_intact(agent)


def test_a_hostile_patch_reading_outside_its_base_never_becomes_a_trial(
        agent: RunningAgent, es256_signer: FileSigner) -> None:
    size = len(FIRMWARE_V2)
    block = encode_block([(size, 0, len(FIRMWARE_V1))], bytes(size), b"", (CODEC_ZSTD,))
    base = Delta(hashlib.sha256(FIRMWARE_V1).digest(), len(FIRMWARE_V1))
    data = hostile(es256_signer, FIRMWARE_V2, patch_bytes([block]), base)
    with pytest.raises(PatchError, match=r"outside the \d+-byte base image"):
        agent.client().install(iter([data]), size=len(data))
    assert_no_trial_and_v1_intact(agent)


def test_a_base_slot_tampered_with_by_the_rich_os_yields_no_trial(
        agent: RunningAgent, tmp_path: Path, es256_signer: FileSigner, v1_sfui: Path) -> None:
    image = sign_encoded(tmp_path, es256_signer, FIRMWARE_V2, v1_sfui)
    slot_a = agent.board / "slots" / "A.img"
    data = bytearray(slot_a.read_bytes())
    data[100] ^= 0xFF  # the Rich OS can write slot storage; the records still name v1
    slot_a.write_bytes(bytes(data))
    with pytest.raises(PayloadDigestError):
        install_file(agent, image)
    assert agent.client().status().trial_slot is None
