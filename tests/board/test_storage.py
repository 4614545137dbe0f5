"""Secure storage (RPMB-like) and fuses of the simulated board."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sfupdate.errors import DeviceStateError, StorageIntegrityError
from sfupdate.secure.board import Fuse
from sfupdate.secure.board.power import Power, PowerCut
from sfupdate.secure.board.sim import create_board, open_board
from sfupdate.secure.kernel import Kernel
from tests.board.conftest import Images
from tests.world import fresh, reboot


@pytest.fixture
def blank(tmp_path: Path) -> Path:
    board = create_board(tmp_path / "b", 64 * 1024)
    board.fuses.burn(Fuse.DEVICE_SECRET, bytes(range(32)))
    return tmp_path / "b"


def test_fuse_cannot_be_burned_twice(blank: Path) -> None:
    board = open_board(blank, Power())
    with pytest.raises(DeviceStateError, match="already burned"):
        board.fuses.burn(Fuse.DEVICE_SECRET, b"\x01" * 32)
    assert board.fuses.read(Fuse.DEVICE_SECRET) == bytes(range(32))


def test_storage_round_trip_and_atomic_multi_record_write(blank: Path) -> None:
    storage = open_board(blank, Power()).storage
    storage.write({"one": b"1", "two": b"2"})
    storage.write({"one": None, "three": b"3"})
    assert storage.names() == ["three", "two"]
    assert storage.read("two") == b"2"
    assert storage.write_counter == 2


def test_storage_rollback_is_detected(blank: Path, tmp_path: Path) -> None:
    """Copy the storage, make a write, put the old copy back -> StorageIntegrityError."""
    storage = open_board(blank, Power()).storage
    storage.write({"floor": b"1"})
    shutil.copytree(blank / "secure", tmp_path / "old")
    storage.write({"floor": b"7"})
    shutil.rmtree(blank / "secure")
    shutil.copytree(tmp_path / "old", blank / "secure")
    # the attacker also renames the old file to the name the counter expects
    (blank / "secure" / "store-1").rename(blank / "secure" / "store-2")
    with pytest.raises(StorageIntegrityError):
        open_board(blank, Power()).storage.read("floor")


def test_storage_forged_without_the_device_secret_is_detected(tmp_path: Path) -> None:
    """A second board (another device secret) cannot produce storage this one accepts."""
    a = create_board(tmp_path / "a", 4096)
    b = create_board(tmp_path / "b", 4096)
    a.fuses.burn(Fuse.DEVICE_SECRET, b"\xaa" * 32)
    b.fuses.burn(Fuse.DEVICE_SECRET, b"\xbb" * 32)
    a.storage.write({"floor": b"1"})
    b.storage.write({"floor": b"0"})
    shutil.copy(tmp_path / "b" / "secure" / "store-1", tmp_path / "a" / "secure" / "store-1")
    shutil.copy(tmp_path / "b" / "hw" / "rpmb-counter", tmp_path / "a" / "hw" / "rpmb-counter")
    with pytest.raises(StorageIntegrityError, match="MAC"):
        open_board(tmp_path / "a", Power()).storage.read("floor")


def test_storage_bit_flip_is_detected(blank: Path) -> None:
    storage = open_board(blank, Power()).storage
    storage.write({"floor": b"5"})
    path = blank / "secure" / "store-1"
    data = bytearray(path.read_bytes())
    data[-40] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StorageIntegrityError):
        storage.read("floor")


def test_power_cut_at_every_storage_write_step_leaves_old_or_new(blank: Path,
                                                                 tmp_path: Path) -> None:
    storage = open_board(blank, Power()).storage
    storage.write({"floor": b"1"})
    shutil.copytree(blank, tmp_path / "template")
    probe = open_board(blank, Power())
    probe.storage.write({"floor": b"2"})
    steps = probe.power.ops
    assert steps >= 7
    for cut in range(1, steps + 1):
        path = tmp_path / f"cut{cut}"
        shutil.copytree(tmp_path / "template", path)
        board = open_board(path, Power(cut))
        with pytest.raises(PowerCut):
            board.storage.write({"floor": b"2"})
        with pytest.raises(PowerCut):  # a dead board does nothing more
            board.storage.write({"floor": b"3"})
        after = open_board(path, Power()).storage
        assert after.read("floor") in (b"1", b"2")
        after.write({"floor": b"4"})  # and the storage keeps working
        assert after.read("floor") == b"4"


def test_restored_boot_record_cannot_lower_the_floor(board_dir: Path, images: Images,
                                                     tmp_path: Path) -> None:
    """The rollback-floor attack end to end: after a confirm, restoring the old secure
    storage makes the boot refuse (StorageIntegrityError) instead of accepting the old floor."""
    from sfupdate.secure.agent.device import Device
    from sfupdate.secure.agent.install import install

    shutil.copytree(board_dir / "secure", tmp_path / "before")
    board = fresh(board_dir)
    with open(images.v2, "rb") as f:
        install(Device(board), f)
    reboot(board)
    Kernel(board.storage).confirm()
    shutil.rmtree(board_dir / "secure")
    shutil.copytree(tmp_path / "before", board_dir / "secure")
    with pytest.raises(StorageIntegrityError):
        reboot(fresh(board_dir))
