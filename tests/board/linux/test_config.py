"""device.toml: what it must say, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfupdate.errors import UsageError
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.linux.config import load_config

SLOTS = """
[slots]
A = "PARTLABEL=rootfs-a"
B = "PARTUUID=1b0b4c4e-0001-4a4f-8d3e-000000000002"
"""
BOOTLOADER = """
[bootloader]
type = "grub"
grubenv = "/boot/efi/EFI/sfu/grubenv"
"""
MINIMAL = SLOTS + BOOTLOADER


def test_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.state_dir == Path("/var/lib/sfupdate")
    assert config.socket == Path("/run/sfupdate/agent.sock")
    assert config.cmdline == Path("/proc/cmdline")
    assert list(config.components) == ["firmware"]  # [slots]: one component, as in the sim
    assert config.components["firmware"][Slot.A] == "PARTLABEL=rootfs-a"
    assert config.tpm is None and config.health_command == ()


def test_components_keep_the_order_of_the_file(tmp_path: Path) -> None:
    text = MINIMAL.replace("[slots]", "[components.rootfs]") + \
        "[components.boot]\nA = '/dev/vda1'\nB = '/dev/vda2'\n"
    config = load_config(_write(tmp_path, text))
    assert list(config.components) == ["rootfs", "boot"]
    assert config.components["boot"] == {Slot.A: "/dev/vda1", Slot.B: "/dev/vda2"}


def test_tpm_auth_file_defaults_into_the_state_dir(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL + '[tpm]\ntcti = "device:/dev/tpmrm0"\n'))
    assert config.tpm is not None
    assert config.tpm.auth_file == Path("/var/lib/sfupdate/tpm-auth")


@pytest.mark.parametrize(("text", "message"), [
    ("[slots]\nA = 'x'\n", r"\[bootloader\] needs type"),
    (MINIMAL.replace('type = "grub"', 'type = "lilo"'), "type must be one of"),
    (MINIMAL.replace('grubenv = "/boot/efi/EFI/sfu/grubenv"', ""), "needs grubenv"),
    (MINIMAL + "[tpm]\n", "needs tcti"),
    (MINIMAL + "[device]\nstate_dir = 'relative'\n", "must be an absolute path"),
    (MINIMAL + "[device]\nsocks = '/x'\n", "unknown keys: socks"),
    (MINIMAL + "[health]\ncommand = [1]\n", "list of strings"),
    (MINIMAL + "[clients]\n", "unknown tables: clients"),
    ("[slots\n", "not valid TOML"),
    (MINIMAL + "[components.app]\nA = '/a'\nB = '/b'\n", "not both"),
    (MINIMAL.replace("[slots]", "[components.Boot]"), "component name 'Boot'"),
    (MINIMAL.replace("[slots]", "[components.boot]").replace('B = "PARTUUID', 'C = "PARTUUID'),
     r"\[components.boot\] has unknown keys: C"),
    ("components = 1\n" + BOOTLOADER, "1 to 8 tables"),
    ("".join(f"[components.c{i}]\nA = '/a{i}'\nB = '/b{i}'\n" for i in range(9)) + BOOTLOADER,
     "1 to 8 tables"),
])
def test_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_config(_write(tmp_path, text))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path
