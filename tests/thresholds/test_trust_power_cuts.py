"""Power cut at every write of a trust update. The rotation drops the anchor that signed the
running trial, so trust store, boot record (the trial marked bad) and event log change
together. After each cut the secure state is exactly the old or exactly the new one, the
next boot runs an authentic image at or above the floor, and re-sending the update either
applies it (it had not landed) or is refused as a replay (it had)."""

from __future__ import annotations

import io
import itertools
import shutil
from pathlib import Path

import pytest

from sfupdate.errors import ReplayError
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.power import PowerCut
from tests.thresholds.conftest import Signers, role, signed_image, state, trust_update
from tests.world import fresh, reboot

NOW = 1_800_000_000  # one fixed time: the event the update logs is the same in every run
UEID = bytes(33)
MAX_WRITES = 50  # far more than one storage write takes: the sweep must end by itself


def _apply(board: Path, data: bytes, cut: int | None = None) -> None:
    Device(fresh(board, cut)).kernel.update_trust(data, UEID, NOW)


@pytest.fixture
def running_trial(board: Path, signers: Signers, tmp_path: Path) -> Path:
    """Firmware 2 of F1, F2, F3; an image signed by F3 and F2 installed and booted as the
    trial (its recorded signer: F3)."""
    f1, f2, f3, _ = signers.firmware
    _apply(board, trust_update(2, [f1], role("firmware", 2, f1, f2, f3)))
    image = signed_image(tmp_path, 2, [f3, f2]).read_bytes()
    install(Device(fresh(board)), io.BytesIO(image))
    assert reboot(board).trial
    assert state(board).boot.trial_image is not None
    return board


def test_power_cut_at_every_write_of_a_trust_update(running_trial: Path, signers: Signers,
                                                    tmp_path: Path) -> None:
    f1, f2, _, f4 = signers.firmware
    update = trust_update(3, [f1, f2], role("firmware", 2, f1, f2, f4))
    old = state(running_trial)
    reference = tmp_path / "reference"
    shutil.copytree(running_trial, reference)
    _apply(reference, update)
    new = state(reference)
    assert new.trust != old.trust and new.boot.trial is None and new.events != old.events
    outcomes = []
    for cut in itertools.count(1):
        assert cut < MAX_WRITES
        board = tmp_path / f"cut{cut}"
        shutil.copytree(running_trial, board)
        try:
            _apply(board, update, cut)
            completed = True
        except PowerCut:
            completed = False
        after = state(board)
        assert after in (old, new), f"torn state after a cut at write {cut}"
        outcomes.append(after == new)
        booted = reboot(board)
        assert booted.sequence >= state(board).boot.floor
        if outcomes[-1]:
            with pytest.raises(ReplayError):
                _apply(board, update)
        else:
            _apply(board, update)
        assert state(board).trust == new.trust
        if completed:
            assert not outcomes[0] and True in outcomes[:-1]  # cuts before and after commit
            break
    print(f"[power-cut] trust update: cut at each of {cut} write points, never torn")
    assert cut > 2
