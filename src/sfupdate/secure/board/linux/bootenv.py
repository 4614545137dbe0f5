"""Boot control mirrored into the bootloader's environment (RAUC's convention).

The kernel's boot record stays the authority; the bootloader only needs enough to pick a slot
and count tries by itself before any of our code runs:

    BOOT_ORDER="A B"   slots to try, in order (the trial first while it has tries)
    BOOT_A_LEFT=3      tries left per slot; the bootloader decrements before booting a slot
    BOOT_B_LEFT=0      and skips a slot at 0. Slots that must never boot are 0 and not listed.

The boot script (U-Boot: deploy/u-boot/boot.cmd, GRUB: deploy/grub/grub.cfg) passes
`sfu.slot=X` on the kernel command line; at start the agent's boot reconciliation
(sfupdate.secure.boot.linux) turns that into the kernel's `start_boot`/`booted` transitions and the
mirror is rewritten. U-Boot's environment is written with `fw_setenv` (libubootenv-tool),
GRUB's with `grub-editenv`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final, Protocol

from sfupdate.errors import DeviceStateError
from sfupdate.secure.board.hal import SecureStorage, Slot
from sfupdate.secure.board.records import DEFAULT_TRIES, RECORD_BOOT, BootRecord

VARIABLES: Final = ("BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT")
TIMEOUT: Final = 30.0


def _run(args: Sequence[str], package: str, data: bytes = b"") -> str:
    tool = shutil.which(args[0])
    if tool is None:
        raise DeviceStateError(f"{args[0]} is not installed (Debian package {package})")
    try:
        done = subprocess.run([tool, *args[1:]], input=data, capture_output=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise DeviceStateError(f"{args[0]} did not finish within {TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise DeviceStateError(f"{args[0]} failed: "
                               f"{done.stderr.decode(errors='replace').strip()[:300]}")
    return done.stdout.decode(errors="replace")


def _parse(listing: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in listing.splitlines())
    return {name: value for name, sep, value in pairs if sep and name in VARIABLES}


class BootEnv(Protocol):
    def read(self) -> dict[str, str]:
        """The boot-control variables present in the environment."""
        ...

    def write(self, values: Mapping[str, str]) -> None:
        """Set variables, all in one write of the environment."""
        ...


class UBootEnv:
    """U-Boot's environment through `fw_printenv`/`fw_setenv -c CONFIG` (the config names the
    device or file, offset and size; a redundant environment is two lines). `defaults` is
    the default environment libubootenv falls back to while the stored one is blank."""

    def __init__(self, config: Path, defaults: Path | None = None) -> None:
        self._args = ["-c", str(config)] + (["-f", str(defaults)] if defaults else [])

    def read(self) -> dict[str, str]:
        return _parse(_run(["fw_printenv", *self._args], "libubootenv-tool"))

    def write(self, values: Mapping[str, str]) -> None:
        script = "".join(f"{name}={value}\n" for name, value in values.items())
        _run(["fw_setenv", *self._args, "-s", "-"], "libubootenv-tool", script.encode())


GRUBENV_SIGNATURE: Final = b"# GRUB Environment Block\n"
GRUBENV_SIZE: Final = 1024


def _grubenv_lines(block: bytes) -> list[bytes]:
    """The lines of a GRUB environment block as GRUB's envblk.c reads them: after the
    signature, lines end at a newline no backslash escapes; `#` lines are comments."""
    lines, line, escaped = [], bytearray(), False
    for byte in block[len(GRUBENV_SIGNATURE):]:
        if escaped or byte == 0x5C:  # a backslash escapes the next byte
            line.append(byte)
            escaped = not escaped
        elif byte == 0x0A:
            lines.append(bytes(line))
            line.clear()
        else:
            line.append(byte)
    return [line for line in lines if not line.startswith(b"#")]


def _unescape(raw: bytes) -> str:
    return re.sub(rb"\\(.)", rb"\1", raw, flags=re.DOTALL).decode(errors="replace")


class GrubEnv:
    """A GRUB environment block (`grubenv`, 1 KiB, rewritten in place by grub-editenv).

    Read directly (what `grub-editenv list` prints, without a process: the mirror reads it
    after every boot-control write, and a process costs a small board a noticeable time);
    written by grub-editenv."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def read(self) -> dict[str, str]:
        try:
            block = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        if len(block) != GRUBENV_SIZE or not block.startswith(GRUBENV_SIGNATURE):
            raise DeviceStateError(f"{self._path} is not a GRUB environment block")
        pairs = (line.partition(b"=") for line in _grubenv_lines(block))
        return {name: _unescape(value) for name, value in
                ((_unescape(n), v) for n, sep, v in pairs if sep) if name in VARIABLES}

    def write(self, values: Mapping[str, str]) -> None:
        if not self._path.exists():
            _run(["grub-editenv", str(self._path), "create"], "grub-common")
        _run(["grub-editenv", str(self._path), "set",
              *(f"{name}={value}" for name, value in values.items())], "grub-common")


def wanted(boot: BootRecord) -> dict[str, str]:
    """The variables that make the bootloader do what `boot` says."""
    trial = boot.trial if boot.trial is not None and boot.tries_left > 0 else None
    order = [s for s in (trial, boot.confirmed) if s is not None]

    def left(slot: Slot) -> int:
        if slot is trial:
            return boot.tries_left
        return DEFAULT_TRIES if slot is boot.confirmed else 0

    return {"BOOT_ORDER": " ".join(s.value for s in order),
            "BOOT_A_LEFT": str(left(Slot.A)), "BOOT_B_LEFT": str(left(Slot.B))}


class BootMirror:
    """Keeps a `BootEnv` equal to `wanted(boot record)`; writes only what differs (a
    bootloader environment lives in flash)."""

    def __init__(self, env: BootEnv) -> None:
        self.env = env

    def sync(self, boot: BootRecord) -> None:
        want = wanted(boot)
        if self.env.read() != want:
            self.env.write(want)


class MirroredStorage:
    """A `SecureStorage` whose every committed boot record is mirrored right after the commit.
    A cut between the two leaves the environment one step behind, never ahead: a new trial is
    not booted yet, a confirm or reject shows on the next sync (the agent syncs at start)."""

    def __init__(self, inner: SecureStorage, mirror: BootMirror) -> None:
        self._inner = inner
        self._mirror = mirror

    def read(self, name: str) -> bytes | None:
        return self._inner.read(name)

    def names(self) -> list[str]:
        return self._inner.names()

    def read_all(self) -> Mapping[str, bytes]:
        return self._inner.read_all()

    def lock(self) -> AbstractContextManager[None]:
        return self._inner.lock()

    @property
    def write_counter(self) -> int:
        return self._inner.write_counter

    def write(self, changes: Mapping[str, bytes | None]) -> None:
        self._inner.write(changes)
        raw = changes.get(RECORD_BOOT)
        if raw is not None:
            self._mirror.sync(BootRecord.decode(raw))
