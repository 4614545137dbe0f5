"""Never bricked, never downgraded, never half a set: cut power at EVERY write of update
cycles of a two-component board (a set naming both components, a set naming one and keeping
the other, a set that fails its health check and reverts), then reboot and check what
tests/board/test_power_cut.py checks for one component: an authentic set boots at or above
the floor, the floor never goes down, the confirmed set is never lost (every component of it
verifies against its record) — and a trial, if one was recorded, is the whole new set."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.sim import SimBoard
from sfupdate.secure.kernel import Kernel
from sfupdate.secure.kernel.verify import verify_slot
from tests.board.test_power_cut import Cycle, sweep
from tests.components.conftest import CopyBoard, SignSet, app_image, boot_image
from tests.world import fresh, reboot

SET_V2 = {"boot": boot_image(2), "app": app_image(2)}


def cycle(image: Path, *, confirm: bool) -> Cycle:
    def run(board: SimBoard) -> None:
        install(Device(board), io.BytesIO(image.read_bytes()))
        trial = Kernel(board.storage).state().boot.trial_image
        assert trial is not None and trial.components is not None  # the whole set, or none
        booted = reboot(board)
        if confirm:
            assert booted.sequence == image_sequence(board)
            Kernel(board.storage).confirm()
    return run


def trial_is_a_whole_set(path: Path) -> None:
    """A trial the cut left recorded is the complete new set: every component verifies."""
    board = fresh(path)
    state = Kernel(board.storage).state()
    record, trial = state.boot, state.boot.trial_image
    if record.trial is None or trial is None:
        return
    assert trial.components is not None and len(trial.components) == 2
    verify_slot(board, record.trial, trial, state.signer_keys(trial), state.device,
                record.floor)


def image_sequence(board: SimBoard) -> int:
    return Kernel(board.storage).state().running_image.sequence


@pytest.mark.parametrize("name", ["both-components", "one-kept", "revert"])
def test_power_cut_at_every_write_of_a_set_install_leaves_a_consistent_set(
        name: str, set_board: CopyBoard, sign_set: SignSet,
        capsys: pytest.CaptureFixture[str]) -> None:
    run, allowed = {
        "both-components": (cycle(sign_set(2, **SET_V2), confirm=True), {1, 2}),
        "one-kept": (cycle(sign_set(2, app=app_image(2)), confirm=True), {1, 2}),
        "revert": (cycle(sign_set(3, boot=boot_image(3), app=app_image(3) +
                                  b"SFU-HEALTH:FAIL"), confirm=False), {1}),
    }[name]
    tried = sweep(set_board, run, allowed, trial_is_a_whole_set)
    with capsys.disabled():
        print(f"\n[power-cut] two-component {name} cycle: cut power at each of {tried} write "
              "points; an authentic, whole set booted at or above the floor after every one")
    assert tried > 40
