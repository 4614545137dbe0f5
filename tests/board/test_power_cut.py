"""Never bricked, never downgraded: cut power at EVERY write index of an update cycle.

Each cycle runs on a copy of a provisioned board with power cut at write N (N = 1 .. all
writes the cycle makes), then "reboots" a fresh board from the same directory and checks:
  1. an authentic slot boots (its signed manifest and digest verify, at or above the floor);
  2. the rollback floor never decreases;
  3. a confirmed image is never lost (the confirmed slot holds v1 or, once confirmed, v2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.power import PowerCut
from sfupdate.secure.board.sim import SimBoard
from sfupdate.secure.kernel import Kernel
from sfupdate.secure.kernel.verify import verify_slot
from tests.board.conftest import CopyBoard, Images
from tests.world import fresh, reboot

Cycle = Callable[[SimBoard], None]


def full_cycle(images: Images) -> Cycle:
    def run(board: SimBoard) -> None:
        with open(images.v2, "rb") as f:
            install(Device(board), f)
        assert reboot(board).slot == "B"
        Kernel(board.storage).confirm()
    return run


def revert_cycle(images: Images) -> Cycle:
    def run(board: SimBoard) -> None:
        with open(images.failing, "rb") as f:
            install(Device(board), f)
        assert reboot(board).slot == "A"  # health check failed, reverted
    return run


def exhausted_tries_cycle(images: Images) -> Cycle:
    def run(board: SimBoard) -> None:
        with open(images.v2, "rb") as f:
            install(Device(board), f)
        for _ in range(4):
            reboot(board)
    return run


def check_invariants(path: Path, floor_before: int, allowed_confirmed: set[int]) -> None:
    at_cut = Kernel(fresh(path).storage).state().boot  # what the cut left committed
    assert at_cut.floor >= floor_before
    assert at_cut.confirmed_image.sequence in allowed_confirmed
    board = fresh(path)
    result = reboot(board)  # raises if no authentic slot boots
    state = Kernel(board.storage).state()
    record = state.boot
    assert record.floor >= at_cut.floor
    assert record.confirmed_image == at_cut.confirmed_image  # a reboot never loses it
    assert result.sequence >= record.floor
    assert record.confirmed_image.sequence in allowed_confirmed
    image = record.confirmed_image
    check = verify_slot(board, record.confirmed, image, state.signer_keys(image),
                        state.device, record.floor)
    assert check.healthy
    assert record.floor == record.confirmed_image.sequence


def sweep(fresh_board: CopyBoard, cycle: Cycle, allowed_confirmed: set[int],
          at_cut: Callable[[Path], None] | None = None) -> int:
    """Cut at every write of `cycle`; `at_cut` checks more of what each cut left, first."""
    probe = fresh(fresh_board())
    cycle(probe)
    total = probe.power.ops
    for cut in range(1, total + 1):
        path = fresh_board()
        board = fresh(path, cut_at=cut)
        with pytest.raises(PowerCut):
            cycle(board)
        assert board.power.ops == cut
        if at_cut is not None:
            at_cut(path)
        check_invariants(path, 1, allowed_confirmed)
    return total


@pytest.mark.parametrize("name", ["full", "revert", "exhausted-tries"])
def test_power_cut_at_every_write_never_bricks_or_downgrades(
        name: str, fresh_board: CopyBoard, images: Images,
        capsys: pytest.CaptureFixture[str]) -> None:
    cycle, allowed = {
        "full": (full_cycle(images), {1, 2}),
        "revert": (revert_cycle(images), {1}),
        "exhausted-tries": (exhausted_tries_cycle(images), {1}),
    }[name]
    tried = sweep(fresh_board, cycle, allowed)
    with capsys.disabled():
        print(f"\n[power-cut] {name} cycle: cut power at each of {tried} write points, "
              "all three invariants held after every reboot")
    assert tried > 40
