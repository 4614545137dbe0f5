"""Real tools for the linux backend's tests: a software TPM (swtpm) on loopback per test, and
slot, U-Boot and GRUB environment files. A missing tool skips the test locally and fails it
under CI (`CI` set), where .ci/run installs them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tpm2_pytss import TPM2_SU

from sfupdate.secure.board.linux.board import LinuxBoard
from sfupdate.secure.board.linux.config import load_config
from sfupdate.secure.board.linux.slots import HEADER_AREA
from sfupdate.secure.board.linux.tpm import Tpm
from tests.world import SMALL_SLOT_SIZE as SLOT_SIZE

PACKAGES = {"swtpm": "swtpm", "swtpm_setup": "swtpm-tools", "swtpm_ioctl": "swtpm-tools",
            "grub-script-check": "grub-common", "mkimage": "u-boot-tools",
            "fw_setenv": "libubootenv-tool", "grub-editenv": "grub-common",
            # the QEMU board (tests/vm)
            "qemu-system-x86_64": "qemu-system-x86", "sfdisk": "fdisk", "mke2fs": "e2fsprogs",
            "grub-mkimage": "grub-common", "apt-get": "apt", "dpkg-deb": "dpkg"}


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        why = (f"needs {', '.join(missing)} (Debian: "
               f"{' '.join(sorted({PACKAGES.get(t, t) for t in missing}))})")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def _free_ports() -> int:
    """A port P with P+1 free too (swtpm's server and control ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port < 65535:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for swtpm")


@dataclass
class SoftTpm:
    port: int
    state: Path
    process: subprocess.Popen[bytes]

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def tpm(self) -> Tpm:
        return Tpm(self.tcti)

    def power_cycle(self) -> None:
        """Cut the TPM's power too (TPM reset + Startup(CLEAR)): what a board's power cut
        does; it drops the transient objects and sessions of a killed process."""
        subprocess.run(["swtpm_ioctl", "--tcp", f"127.0.0.1:{self.port + 1}", "-i"],
                       check=True, capture_output=True)
        with self.tpm.command("Startup") as esys:
            esys.startup(TPM2_SU.CLEAR)


def start_swtpm(state: Path) -> SoftTpm:
    state.mkdir(parents=True, exist_ok=True)
    if not (state / "tpm2-00.permall").exists():
        subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state.resolve()),
                        "--overwrite"], check=True, capture_output=True)
    port = _free_ports()
    process = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state.resolve()}",
         "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
         "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
         "--flags", "not-need-init,startup-clear"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"swtpm did not start: {process.stderr!r}") from None
            time.sleep(0.05)
    return SoftTpm(port, state, process)


def stop_swtpm(soft: SoftTpm) -> None:
    soft.process.terminate()
    try:
        soft.process.wait(5)
    except subprocess.TimeoutExpired:
        soft.process.kill()
        soft.process.wait()


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[SoftTpm]:
    need("swtpm", "swtpm_setup", "swtpm_ioctl")
    soft = start_swtpm(tmp_path / "swtpm")
    try:
        yield soft
    finally:
        stop_swtpm(soft)


def slot_files(root: Path, size: int = SLOT_SIZE) -> tuple[Path, Path]:
    """Two slot "devices": files of the slot size plus the header area."""
    root.mkdir(parents=True, exist_ok=True)
    paths = (root / "slot-a.img", root / "slot-b.img")
    for path in paths:
        with open(path, "wb") as f:
            f.truncate(size + HEADER_AREA)
    return paths


def uboot_env(root: Path) -> Path:
    """A blank 16 KiB U-Boot environment file and its fw_env.config (and default env)."""
    (root / "uboot.env").write_bytes(bytes(16384))
    (root / "u-boot-initial-env").write_text("bootdelay=0\n")
    config = root / "fw_env.config"
    config.write_text(f"{root / 'uboot.env'} 0x0 0x4000\n")
    return config


def write_config(root: Path, tcti: str | None, bootloader: str = "u-boot",
                 extra: str = "") -> Path:
    a, b = slot_files(root / "dev")
    lines = ["[device]", f'state_dir = "{root / "state"}"', f'socket = "{root / "agent.sock"}"',
             "[slots]", f'A = "{a}"', f'B = "{b}"', "[bootloader]", f'type = "{bootloader}"']
    if bootloader == "u-boot":
        lines += [f'env_config = "{uboot_env(root)}"',
                  f'env_defaults = "{root / "u-boot-initial-env"}"']
    elif bootloader == "grub":
        lines += [f'grubenv = "{root / "grubenv"}"']
    if tcti is not None:
        lines += ["[tpm]", f'tcti = "{tcti}"']
    path = root / "device.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture
def linux_board(tmp_path: Path, swtpm: SoftTpm) -> LinuxBoard:
    need("fw_setenv")
    return LinuxBoard(load_config(write_config(tmp_path / "dev", swtpm.tcti)))


class CountingTpm(Tpm):
    """The real TPM, noting which command each call runs."""

    def __init__(self, tcti: str) -> None:
        super().__init__(tcti)
        self.commands: list[str] = []

    @contextmanager
    def command(self, name: str) -> Iterator[Any]:
        self.commands.append(name)
        with super().command(name) as esys:
            yield esys
