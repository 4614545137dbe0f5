"""`LinuxSlots`: the A/B slots as block devices (or partitions, or plain files of a fixed
size standing in for them). No file system is assumed.

A slot device of S bytes holds the image from offset 0 and, in its last HEADER_AREA bytes,
the SFUI header of that image (there is no side file to keep it in):

    offset S - HEADER_AREA:   a 4 KiB block: MAGIC (8) | length (4, big-endian) |
                              SHA-256 of the header (32) | zeros
    offset S - HEADER_AREA + 4096: the header bytes (at most MAX_HEADER)

`writer()` first zeroes the 4 KiB block (fsync), so the old header is gone before a byte of
the new image lands; `finish()` fsyncs the image, then writes the header and the block and
fsyncs again. A torn header write fails its digest and reads as "no header".
The usable slot size is S - HEADER_AREA.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from sfupdate.errors import DeviceStateError, TooLargeError, UsageError
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import Power
from sfupdate.secure.board.slotio import PoweredSlotWriter, SlotImageReader

MAGIC: Final = b"SFUHDR01"
BLOCK: Final = 4096
MAX_HEADER: Final = 2 * 1024 * 1024
HEADER_AREA: Final = BLOCK + MAX_HEADER
_INFO: Final = struct.Struct(">8sI32s")
DEV_DISK: Final = Path("/dev/disk")


def resolve(spec: str, dev_disk: Path = DEV_DISK) -> Path:
    """A slot named by path, `PARTLABEL=name` or `PARTUUID=uuid` (udev's /dev/disk links)."""
    if spec.startswith("PARTLABEL="):
        path = dev_disk / "by-partlabel" / spec.removeprefix("PARTLABEL=")
    elif spec.startswith("PARTUUID="):
        path = dev_disk / "by-partuuid" / spec.removeprefix("PARTUUID=").lower()
    elif spec.startswith("/"):
        path = Path(spec)
    else:
        raise UsageError(f"slot {spec!r}: give an absolute path, PARTLABEL=... or PARTUUID=...")
    if not path.exists():
        raise DeviceStateError(f"slot {spec}: {path} does not exist")
    return path.resolve()


def device_size(path: Path) -> int:
    """The size of a block device or file (seeking to its end works for both)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


class LinuxSlotWriter(PoweredSlotWriter):
    """Writes the image at the start of the device; finish() fsyncs it, then writes the SFUI
    header into the header area at the end, and its info block last."""

    def __init__(self, power: Power, path: Path, header: bytes, size: int) -> None:
        super().__init__(power, os.open(path, os.O_WRONLY | os.O_CLOEXEC), size)
        self._header = header

    def finish(self) -> None:
        fd = self._open_fd()
        self._power.fsync(fd)
        info = _INFO.pack(MAGIC, len(self._header), hashlib.sha256(self._header).digest())
        self._power.write(fd, self._header, self._size + BLOCK)
        self._power.write(fd, info, self._size)
        self._power.fsync(fd)
        self._close()


class LinuxSlots:
    """Implements `Slots` over two devices of the same size."""

    def __init__(self, devices: Mapping[Slot, Path], power: Power) -> None:
        sizes = {device_size(path) for path in devices.values()}
        if set(devices) != set(Slot) or len(sizes) != 1:
            raise UsageError("the A and B slot devices must both exist and be the same size")
        total = sizes.pop()
        if total <= HEADER_AREA or total % BLOCK:
            raise UsageError(f"a slot device must be a multiple of 4 KiB and larger than the "
                             f"{HEADER_AREA}-byte header area")
        self._devices = dict(devices)
        self._size = total - HEADER_AREA
        self._power = power

    @property
    def size(self) -> int:
        return self._size

    def writer(self, slot: Slot, header: bytes) -> LinuxSlotWriter:
        if len(header) > MAX_HEADER:
            raise TooLargeError("SFUI header is too large for the slot header area")
        fd = os.open(self._devices[slot], os.O_WRONLY | os.O_CLOEXEC)
        try:
            self._power.write(fd, bytes(BLOCK), self._size)
            self._power.fsync(fd)
        finally:
            self._power.closed(fd)
            os.close(fd)
        return LinuxSlotWriter(self._power, self._devices[slot], header, self._size)

    def header(self, slot: Slot) -> bytes | None:
        with open(self._devices[slot], "rb") as f:
            f.seek(self._size)
            magic, length, digest = _INFO.unpack(f.read(_INFO.size))
            if magic != MAGIC or length > MAX_HEADER:
                return None
            f.seek(self._size + BLOCK)
            header = f.read(length)
        return header if hashlib.sha256(header).digest() == digest else None

    def image_reader(self, slot: Slot, size: int) -> SlotImageReader:
        if not 0 <= size <= self._size:
            raise TooLargeError(f"cannot read {size} bytes from a {self._size}-byte slot")
        fd = os.open(self._devices[slot], os.O_RDONLY | os.O_CLOEXEC)
        return SlotImageReader(fd, size, slot.value)

    def read(self, slot: Slot, length: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        if not 0 <= length <= self._size:
            raise TooLargeError(f"cannot read {length} bytes from a {self._size}-byte slot")
        with open(self._devices[slot], "rb") as f:
            remaining = length
            while remaining:
                chunk = f.read(min(chunk_size, remaining))
                if not chunk:
                    raise DeviceStateError(f"slot {slot.value} is shorter than its size")
                remaining -= len(chunk)
                yield chunk
