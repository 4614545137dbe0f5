"""Secure boot, slot selection, trial/confirm/revert and provisioning."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sfupdate.authoring.author.bundle import one_time_agent_bundle
from sfupdate.errors import (
    DeviceStateError,
    DowngradeError,
    PayloadDigestError,
    WrongClassError,
)
from sfupdate.formats.sfui import TrustedKey
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board import Slot, SlotStatus
from sfupdate.secure.board.sim import create_board
from sfupdate.secure.boot.provision import provision
from sfupdate.secure.kernel import Kernel
from tests.board.conftest import Images
from tests.world import CLASS_NAME, VENDOR_NAME, fresh, reboot


def _install(board_dir: Path, image: Path) -> None:
    with open(image, "rb") as f:
        install(Device(fresh(board_dir)), f)


def test_provisioned_board_boots_the_initial_image_and_measures_it(board_dir: Path) -> None:
    board = fresh(board_dir)
    result = reboot(board)
    assert (result.slot, result.trial, result.sequence, result.healthy) == ("A", False, 1, True)
    state = Kernel(board.storage).state()
    assert [e.stage for e in state.measured.events] == ["agent", "manifest", "firmware"]
    assert result.pcr == state.measured.pcr.hex()
    assert state.boot.floor == 1


def test_provisioning_twice_is_refused(board_dir: Path, images: Images,
                                       es256_trusted: TrustedKey) -> None:
    with pytest.raises(DeviceStateError, match="already provisioned"):
        provision(fresh(board_dir), [es256_trusted], VENDOR_NAME, CLASS_NAME, images.v1,
                  *one_time_agent_bundle())


def test_provisioning_refuses_foreign_firmware_before_burning_a_fuse(
        tmp_path: Path, images: Images, es256_trusted: TrustedKey) -> None:
    board = create_board(tmp_path / "b", 64 * 1024)
    with pytest.raises(WrongClassError):
        provision(board, [es256_trusted], VENDOR_NAME, "another-class", images.v1,
                  *one_time_agent_bundle())
    assert not any((tmp_path / "b" / "hw" / "otp").iterdir())


def test_full_cycle_trial_boot_then_confirm_raises_the_floor(board_dir: Path,
                                                             images: Images) -> None:
    _install(board_dir, images.v2)
    board = fresh(board_dir)
    kernel = Kernel(board.storage)
    assert kernel.state().boot.floor == 1 and kernel.state().boot.trial is Slot.B
    with pytest.raises(DeviceStateError, match="not been booted"):
        kernel.confirm()  # a trial that never ran cannot be confirmed
    result = reboot(board)
    assert (result.slot, result.trial, result.sequence) == ("B", True, 2)
    assert kernel.state().boot.tries_left == 2  # decremented before it booted
    assert kernel.state().boot.floor == 1  # not yet confirmed: the floor stays
    record = kernel.confirm().boot
    assert (record.confirmed, record.floor, record.trial) == (Slot.B, 2, None)
    assert record.slot(Slot.A).status is SlotStatus.SUPERSEDED
    assert reboot(board).slot == "B"


def test_failing_health_check_reverts_to_the_confirmed_image(board_dir: Path,
                                                             images: Images) -> None:
    _install(board_dir, images.failing)
    board = fresh(board_dir)
    result = reboot(board)
    assert (result.slot, result.trial, result.sequence) == ("A", False, 1)
    assert any("health check" in e for e in result.events)
    record = Kernel(board.storage).state().boot
    assert record.slot(Slot.B).status is SlotStatus.BAD
    assert (record.trial, record.floor) == (None, 1)


def test_exhausted_tries_revert_to_the_confirmed_image(board_dir: Path, images: Images) -> None:
    _install(board_dir, images.v2)
    board = fresh(board_dir)
    for _ in range(3):
        assert reboot(board).slot == "B"  # booted on trial, never confirmed
    result = reboot(board)
    assert result.slot == "A" and "ran out of tries" in " ".join(result.events)
    assert Kernel(board.storage).state().boot.slot(Slot.B).status is SlotStatus.BAD


def test_downgrade_is_refused_by_boot_control(board_dir: Path, images: Images) -> None:
    _install(board_dir, images.v2)
    board = fresh(board_dir)
    reboot(board)
    kernel = Kernel(board.storage)
    kernel.confirm()
    slot = kernel.begin_install()
    confirmed = kernel.state().boot.confirmed_image
    with pytest.raises(DowngradeError):
        kernel.record_trial(slot, replace(confirmed, sequence=1, digest=b"\0" * 32),
                            [confirmed.signer])


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_tampered_trial_slot_at_rest_falls_back_to_the_confirmed_slot(
        board_dir: Path, images: Images) -> None:
    _install(board_dir, images.v2)
    _flip(board_dir / "slots" / "B.img", 100)
    board = fresh(board_dir)
    result = reboot(board)
    assert result.slot == "A"
    assert "failed verification" in " ".join(result.events)
    assert Kernel(board.storage).state().boot.slot(Slot.B).status is SlotStatus.BAD


def test_tampered_confirmed_slot_at_rest_is_refused(board_dir: Path) -> None:
    _flip(board_dir / "slots" / "A.img", 5)
    board = fresh(board_dir)
    with pytest.raises(PayloadDigestError, match="refusing to boot confirmed slot A"):
        reboot(board)
    measured = Kernel(board.storage).state().measured
    assert [e.stage for e in measured.events] == ["agent"]  # nothing ran


def test_swapped_slot_header_is_refused(board_dir: Path, images: Images) -> None:
    """A validly signed header of another image does not make slot B's content bootable."""
    _install(board_dir, images.v2)
    (board_dir / "slots" / "B.hdr").write_bytes((board_dir / "slots" / "A.hdr").read_bytes())
    result = reboot(fresh(board_dir))
    assert result.slot == "A" and "failed verification" in " ".join(result.events)
