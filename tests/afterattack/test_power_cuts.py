"""Power cut at every write of a remote `revoke-key` and a remote `revert`, in a real agent
process (the board's `power-cut-at` knob). After each cut the device's secure state is
exactly the old one or exactly the new one (trust anchors, boot record, command number,
event log: one atomic write), the rollback floor is never lower, and the next boot runs an
authentic image at or above the floor."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.secure.board.power import POWER_CUT_EXIT
from sfupdate.secure.board.records import BootRecord, RemoteState, TrustStore
from sfupdate.secure.board.sim import POWER_KNOB, open_board
from tests.afterattack.conftest import CopyBoard, Keys
from tests.afterattack.support import (
    boot_record,
    command,
    device_target,
    events,
    remote,
    trust_store,
)
from tests.agent.support import start_agent, stop_agent
from tests.world import reboot

MAX_WRITES = 50  # far more than one storage write takes: the sweep must end by itself


@dataclass(frozen=True)
class SecureState:
    trust: TrustStore
    boot: BootRecord
    remote: RemoteState
    events: tuple[tuple[int, str, str, str], ...]


def secure_state(board: Path) -> SecureState:
    """The command's own effect. Left out: event times (runs differ in them) and the
    findings of the integrity check the agent runs AFTER the command's write, for the
    attestation in its answer (a separate write: after a revocation, the running trial no
    longer verifies)."""
    log = events(board)
    return SecureState(trust_store(board), boot_record(board), remote(board),
                       tuple((e.number, e.kind, e.subject, e.detail) for e in log.events
                             if e.kind != "integrity-mismatch"))


def sweep(copy: Callable[[], Path], sockets: Path, signed: Callable[[Path], bytes]) -> int:
    """Run the command with power cut at write 1, 2, ... until it completes; check each
    outcome. Returns the number of cut points tried."""
    reference = copy()
    old = secure_state(reference)
    agent = start_agent(reference, sockets)
    try:
        agent.client().remote(signed(reference))
    finally:
        stop_agent(agent)
    new = secure_state(reference)
    assert new != old
    outcomes = []
    for cut in itertools.count(1):
        assert cut < MAX_WRITES
        board = copy()
        (board / POWER_KNOB).write_text(str(cut))
        agent = start_agent(board, sockets)
        completed = False
        try:
            agent.client().remote(signed(board))
            completed = True
        except errors.IpcError:  # the agent lost power mid-command
            assert agent.proc.wait(10) == POWER_CUT_EXIT, agent.log.read_text()
        finally:
            stop_agent(agent)
        after = secure_state(board)
        assert after in (old, new), f"torn state after a cut at write {cut}"
        outcomes.append(after == new)
        assert after.boot.floor >= old.boot.floor
        booted = reboot(open_board(board))
        assert booted.sequence >= after.boot.floor
        if completed:
            assert after == new
            assert not outcomes[0] and True in outcomes[:-1]  # cuts before and after commit
            return cut
    raise AssertionError("unreachable")


def test_power_cut_at_every_write_of_a_revoke(copy_board: CopyBoard, trial_template: Path,
                                              anchors: Keys, socket_dir: Path) -> None:
    """Revoking the key that signed the running trial: trust store, trial marked bad,
    command number and event all change in one write."""
    revoked = anchors.second_firmware.kid

    def signed(board: Path) -> bytes:
        return command(anchors.operator, device_target(board), 1, "revoke-key", key_id=revoked)

    points = sweep(lambda: copy_board(trial_template), socket_dir, signed)
    assert points > 3


def test_power_cut_at_every_write_of_a_revert(copy_board: CopyBoard, trial_template: Path,
                                              anchors: Keys, socket_dir: Path) -> None:
    def signed(board: Path) -> bytes:
        return command(anchors.operator, device_target(board), 1, "revert")

    points = sweep(lambda: copy_board(trial_template), socket_dir, signed)
    assert points > 3


def test_revoked_key_stays_revoked_after_a_restored_storage_copy(
        copy_board: CopyBoard, confirmed_template: Path, anchors: Keys,
        socket_dir: Path) -> None:
    """Putting back secure storage from before the revocation is detected: the key cannot
    come back that way (the agent refuses to start on the rolled-back storage)."""
    import shutil
    board = copy_board(confirmed_template)
    saved = board.parent / "saved-secure"
    shutil.copytree(board / "secure", saved)
    agent = start_agent(board, socket_dir)
    try:
        agent.client().remote(command(anchors.operator, device_target(board), 1, "revoke-key",
                                      key_id=anchors.second_firmware.kid))
    finally:
        stop_agent(agent)
    shutil.rmtree(board / "secure")
    shutil.copytree(saved, board / "secure")
    with pytest.raises(errors.StorageIntegrityError):
        trust_store(board)
    with pytest.raises(AssertionError, match="agent failed to start"):
        start_agent(board, socket_dir)
