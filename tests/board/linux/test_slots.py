"""LinuxSlots: slots on block devices (files of a fixed size, and loop devices when this
machine lets us make them), the SFUI header in the area at the end, PARTLABEL/PARTUUID."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate.errors import DeviceStateError, TooLargeError, UsageError
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.linux.slots import BLOCK, HEADER_AREA, MAX_HEADER, LinuxSlots, resolve
from sfupdate.secure.board.power import Power, PowerCut
from tests.board.linux.conftest import slot_files

SIZE = 64 * 1024


def slots(tmp_path: Path, power: Power | None = None) -> LinuxSlots:
    a, b = slot_files(tmp_path / "dev", SIZE) if not (tmp_path / "dev").exists() \
        else (tmp_path / "dev" / "slot-a.img", tmp_path / "dev" / "slot-b.img")
    return LinuxSlots({Slot.A: a, Slot.B: b}, power or Power())


def fill(s: LinuxSlots, slot: Slot, image: bytes, header: bytes) -> None:
    with s.writer(slot, header) as w:
        w.write(image)
        w.finish()


def test_image_and_header_round_trip(tmp_path: Path) -> None:
    s = slots(tmp_path)
    assert s.size == SIZE
    assert s.header(Slot.A) is None  # a blank device has no header
    fill(s, Slot.A, b"image" * 100, b"header bytes")
    assert s.header(Slot.A) == b"header bytes"
    assert b"".join(s.read(Slot.A, 500)) == b"image" * 100
    assert s.header(Slot.B) is None
    device = tmp_path / "dev" / "slot-a.img"
    assert device.stat().st_size == SIZE + HEADER_AREA  # nothing outside the device


def test_a_new_write_removes_the_old_header_first(tmp_path: Path) -> None:
    s = slots(tmp_path)
    fill(s, Slot.A, b"one", b"first header")
    with s.writer(Slot.A, b"second header") as w:
        w.write(b"two")
        assert s.header(Slot.A) is None  # gone before the image is written
    assert s.header(Slot.A) is None  # aborted: still none
    fill(s, Slot.A, b"two", b"second header")
    assert s.header(Slot.A) == b"second header"


@pytest.mark.parametrize("cut_at", range(1, 8))
def test_a_power_cut_leaves_no_header_or_the_whole_one(tmp_path: Path, cut_at: int) -> None:
    """Ops: 1 zero the info block, 2 fsync, 3 image write, 4 fsync, 5 header, 6 info block,
    7 fsync. Unless everything is synced, the header reads as absent, never torn."""
    slots(tmp_path)
    fill(slots(tmp_path), Slot.A, b"old", b"old header")
    with pytest.raises(PowerCut):
        fill(slots(tmp_path, Power(cut_at)), Slot.A, b"new", b"new header" * 50)
    assert slots(tmp_path).header(Slot.A) is None


def test_limits(tmp_path: Path) -> None:
    s = slots(tmp_path)
    with pytest.raises(TooLargeError), s.writer(Slot.B, b"h") as w:
        w.write(bytes(SIZE + 1))
    with pytest.raises(TooLargeError):
        s.writer(Slot.B, bytes(MAX_HEADER + 1))
    odd = tmp_path / "odd.img"
    odd.write_bytes(bytes(HEADER_AREA + BLOCK + 1))
    with pytest.raises(UsageError):
        LinuxSlots({Slot.A: odd, Slot.B: odd}, Power())
    other = tmp_path / "other.img"
    other.write_bytes(bytes(HEADER_AREA + 2 * BLOCK))
    with pytest.raises(UsageError, match="same size"):
        LinuxSlots({Slot.A: tmp_path / "dev" / "slot-a.img", Slot.B: other}, Power())


def test_partlabel_and_partuuid_resolve_through_dev_disk(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    (disk / "by-partlabel").mkdir(parents=True)
    (disk / "by-partuuid").mkdir()
    target = tmp_path / "sda2"
    target.write_bytes(b"")
    (disk / "by-partlabel" / "rootfs-a").symlink_to(target)
    (disk / "by-partuuid" / "0fc63daf-8483-4772-8e79-3d69d8477de4").symlink_to(target)
    assert resolve("PARTLABEL=rootfs-a", disk) == target
    assert resolve("PARTUUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4", disk) == target
    assert resolve(str(target), disk) == target
    with pytest.raises(DeviceStateError, match="does not exist"):
        resolve("PARTLABEL=rootfs-b", disk)
    with pytest.raises(UsageError):
        resolve("sda2", disk)


@pytest.fixture
def loop_devices(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root and losetup")
    a, b = slot_files(tmp_path / "backing", SIZE)
    devices: list[Path] = []
    try:
        for backing in (a, b):
            done = subprocess.run(["losetup", "--find", "--show", str(backing)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                pytest.skip(f"losetup does not work here: {done.stderr.strip()}")
            devices.append(Path(done.stdout.strip()))
        yield devices[0], devices[1]
    finally:
        for device in devices:
            subprocess.run(["losetup", "--detach", str(device)], check=False)


def test_real_loop_devices(loop_devices: tuple[Path, Path]) -> None:
    a, b = loop_devices
    s = LinuxSlots({Slot.A: a, Slot.B: b}, Power())
    assert s.size == SIZE
    fill(s, Slot.B, b"on a block device", b"hdr")
    again = LinuxSlots({Slot.A: a, Slot.B: b}, Power())
    assert again.header(Slot.B) == b"hdr"
    assert b"".join(again.read(Slot.B, 17)) == b"on a block device"
