"""The QEMU board's fixtures: the built image (scripts/vm/build.py, cached in build/vm/),
firmware versions signed for it, and a device provisioned once per session inside the guest
(the production line: `sfu board linux provision` from the update stick, then a reboot).

Every test here is marked `vm`. `SFU_SKIP_VM=1` skips them (a developer's quick run); a
missing tool skips them locally and fails them under CI (`CI` set), where .ci/run installs
it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.keys.files import FileSigner, public_pem
from tests.board.linux.conftest import need
from tests.vm.qemu import Device, Guest, update_stick
from tests.world import CLASS, CLASS_NAME, VENDOR, VENDOR_NAME

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "vm" / "build.py"
BUILD_DIR = Path(os.environ.get("SFU_VM_BUILD", REPO / "build" / "vm"))
CONFIG = "/etc/sfupdate/device.toml"
SOCKET = "/run/sfupdate/agent.sock"
TOOLS = ("qemu-system-x86_64", "swtpm", "swtpm_setup", "sfdisk", "mke2fs", "grub-mkimage",
         "grub-editenv", "apt-get", "dpkg-deb")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vm)


def _need_tools() -> None:
    if os.environ.get("SFU_SKIP_VM") == "1":
        pytest.skip("SFU_SKIP_VM=1: the QEMU board's tests are skipped")
    need(*TOOLS)


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sfu_vm_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def vm_build() -> Path:
    """The built board (downloads cached; assembled again when its inputs change)."""
    _need_tools()
    done = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--out", str(BUILD_DIR)],
                          capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/vm/build.py failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return BUILD_DIR


@dataclass
class Firmware:
    """Firmware versions for the board: the slot image of version N, signed as sequence N."""

    build: Path
    root: Path
    signer: FileSigner
    lock: threading.Lock = field(default_factory=threading.Lock)  # one slot-root staging dir

    @property
    def trust_pem(self) -> Path:
        path = self.root / "firmware.pub.pem"
        if not path.exists():
            path.write_bytes(public_pem(self.signer.public_key))
        return path

    def sfui(self, version: int, healthy: bool = True) -> Path:
        with self.lock:
            return self._sfui(version, healthy)

    def _sfui(self, version: int, healthy: bool) -> Path:
        out = self.root / f"v{version}{'' if healthy else '-unhealthy'}.sfui"
        if out.exists():
            return out
        if version == 1:
            image = self.build / "v1.img"  # exactly what the built disk holds in slot A
        else:
            image = _build_module().slot_image(self.build, version, healthy,
                                               into=self.root / f"v{version}.img")
        sign_firmware(image, out, self.signer, ImageSpec(version, VENDOR, CLASS, str(version)))
        if version != 1:
            image.unlink()
        return out

    def tampered(self, version: int) -> Path:
        """Version `version`, signed, then one byte of its payload flipped."""
        good = self.sfui(version)
        out = self.root / f"v{version}-tampered.sfui"
        data = bytearray(good.read_bytes())
        data[len(data) - 4096] ^= 0x01
        out.write_bytes(bytes(data))
        return out


@pytest.fixture(scope="session")
def firmware(vm_build: Path, tmp_path_factory: pytest.TempPathFactory,
             es256_signer: FileSigner) -> Firmware:
    return Firmware(vm_build, tmp_path_factory.mktemp("vm-firmware"), es256_signer)


def status(guest: Guest) -> dict[str, object]:
    """`sfu board linux status --json` in the guest (the agent's records, read through the
    TPM: the floor, the slots, the trial, and GRUB's environment)."""
    result: dict[str, object] = guest.json(f"sfu board linux status --config {CONFIG} --json")
    return result


def client_update(guest: Guest, name: str) -> tuple[int, str]:
    """The client, as its unit's user, installing /media/update/NAME through the agent."""
    return guest.run(f"su -s /bin/sh sfupdate-client -c 'sfu client update --from "
                     f"/media/update/{name} --socket {SOCKET} --json'", timeout=600)


@pytest.fixture(scope="session")
def provisioned(vm_build: Path, firmware: Firmware,
                tmp_path_factory: pytest.TempPathFactory) -> Device:
    """A device as it leaves the production line: provisioned in the guest with v1 (its TPM
    locked), booted once (the agent confirmed slot A). Tests copy it."""
    root = tmp_path_factory.mktemp("vm-factory")
    device = Device.blank(root / "device", vm_build / "disk.img")
    stick = update_stick(root / "stick.img", {"v1.sfui": firmware.sfui(1),
                                              "firmware.pub.pem": firmware.trust_pem})
    guest = Guest(device, stick, root / "serial.log")
    try:
        assert guest.ready() == ("A", 1)
        guest.check(f"sfu board linux provision --config {CONFIG} --trust "
                    f"/media/update/firmware.pub.pem --vendor {VENDOR_NAME} --class "
                    f"{CLASS_NAME} --firmware /media/update/v1.sfui", timeout=900)
        guest.reboot()
        assert guest.ready() == ("A", 1)
        guest.check("sync")
    finally:
        guest.close()
    return device
