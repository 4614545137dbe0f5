"""A linux board of two components ([components.NAME] in device.toml): one set SFUI installs
both into the inactive side's partitions, the bootloader boots the side, the reconciliation
verifies every component of the set before it confirms, and a component edited behind the
agent's back fails that check."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.bundle import build_agent_bundle
from sfupdate.authoring.author.components import sign_components
from sfupdate.errors import PayloadDigestError, UsageError
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.linux.board import LinuxBoard
from sfupdate.secure.board.linux.config import load_config
from sfupdate.secure.board.linux.slots import HEADER_AREA
from sfupdate.secure.board.records import SlotStatus
from sfupdate.secure.boot.linux import reconcile
from sfupdate.secure.boot.provision import provision
from sfupdate.secure.kernel import Kernel
from tests.board.linux.conftest import SoftTpm, need
from tests.world import CLASS, CLASS_NAME, VENDOR, VENDOR_NAME

SIZES = {"boot": 64 * 1024, "rootfs": 256 * 1024}


def image(name: str, sequence: int) -> bytes:
    return f"{name} {sequence} ".encode() * (SIZES[name] // 40)


def two_component_config(root: Path, tcti: str, components: dict[str, tuple[str, str]]
                         ) -> Path:
    """device.toml with one [components.NAME] table per entry (slot file names A, B)."""
    (root / "dev").mkdir(parents=True)
    lines = ["[device]", f'state_dir = "{root / "state"}"', f'socket = "{root / "a.sock"}"']
    for name, files in components.items():
        lines.append(f"[components.{name}]")
        for slot, file in zip("AB", files, strict=True):
            path = root / "dev" / file
            if not path.exists():
                path.write_bytes(bytes(SIZES[name] + HEADER_AREA))
            lines.append(f'{slot} = "{path}"')
    lines += ["[bootloader]", 'type = "grub"', f'grubenv = "{root / "grubenv"}"',
              "[tpm]", f'tcti = "{tcti}"']
    config = root / "device.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def sign_set(root: Path, signer: FileSigner, sequence: int) -> bytes:
    files = []
    for name in SIZES:
        path = root / f"{name}-{sequence}.bin"
        path.write_bytes(image(name, sequence))
        files.append((name, path))
    out = root / f"set-{sequence}.sfui"
    sign_components(files, out, signer, ImageSpec(sequence, VENDOR, CLASS, f"{sequence}.0"))
    return out.read_bytes()


@pytest.fixture
def board(tmp_path: Path, swtpm: SoftTpm, es256_signer: FileSigner,
          es256_trusted: TrustedKey, agent_signer: FileSigner) -> LinuxBoard:
    need("grub-editenv")
    config = two_component_config(tmp_path, swtpm.tcti, {"boot": ("boot-a", "boot-b"),
                                                         "rootfs": ("root-a", "root-b")})
    first = tmp_path / "set-1.sfui"
    first.write_bytes(sign_set(tmp_path, es256_signer, 1))
    board = LinuxBoard(load_config(config))
    provision(board, [es256_trusted], VENDOR_NAME, CLASS_NAME, first,
              build_agent_bundle(agent_signer), TrustedKey(agent_signer.public_key))
    reconcile(board, Slot.A, "boot-1", confirm=True)
    return board


def test_a_set_installs_into_both_partitions_and_is_confirmed_as_one(
        board: LinuxBoard, tmp_path: Path, es256_signer: FileSigner) -> None:
    assert list(board.components) == ["boot", "rootfs"]
    done = install(Device(board), io.BytesIO(sign_set(tmp_path, es256_signer, 2)))
    assert done.slot is Slot.B
    for name in SIZES:
        written = b"".join(board.components[name].read(Slot.B, len(image(name, 2))))
        assert written == image(name, 2), f"component {name} was not written to slot B"
    result = reconcile(board, Slot.B, "boot-2", confirm=True)
    assert (result.trial, result.healthy, result.confirmed) == (True, True, True)
    boot = Kernel(board.storage).state().boot
    assert boot.confirmed is Slot.B and boot.floor == 2
    confirmed = boot.confirmed_image
    assert confirmed.components is not None
    assert [(c.name, c.sequence) for c in confirmed.components] == [("boot", 2), ("rootfs", 2)]


def test_a_second_component_edited_behind_the_agent_fails_the_boot_check(
        board: LinuxBoard, tmp_path: Path, es256_signer: FileSigner) -> None:
    install(Device(board), io.BytesIO(sign_set(tmp_path, es256_signer, 2)))
    with open(tmp_path / "dev" / "root-b", "r+b") as f:  # the Rich OS edits rootfs in B
        f.seek(100)
        f.write(b"X")
    with pytest.raises(PayloadDigestError, match="component rootfs in slot B does not match"):
        reconcile(board, Slot.B, "boot-2", confirm=True)
    boot = Kernel(board.storage).state().boot
    assert boot.confirmed is Slot.A and boot.floor == 1
    assert boot.slot(Slot.B).status is SlotStatus.BAD


def test_one_device_configured_as_two_slots_is_refused(tmp_path: Path, swtpm: SoftTpm) -> None:
    config = two_component_config(tmp_path, swtpm.tcti, {"boot": ("boot-a", "boot-b"),
                                                         "rootfs": ("boot-a", "root-b")})
    with pytest.raises(UsageError, match="configured as two slots"):
        LinuxBoard(load_config(config))
