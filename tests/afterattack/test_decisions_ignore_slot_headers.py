"""Attack: the Rich OS hides, swaps or plants slot headers (slot storage is its to write) at the
moment a decision is made, to steer it. Every decision reads the facts secure storage recorded
when the image was authenticated (its signer among them), never a header: a hidden header
cannot make the agent revoke the confirmed image's key, keep a trial signed by a revoked key,
or confirm a trial under quarantine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.secure.board.records import SlotStatus
from sfupdate.secure.board.sim import open_board
from tests.afterattack.conftest import Keys
from tests.afterattack.support import boot_record, command, device_target, trust_store
from tests.agent.support import RunningAgent
from tests.conftest import SignImage
from tests.world import reboot


def _hide(board: Path, slot: str) -> None:
    (board / "slots" / f"{slot}.hdr").unlink()


def test_hiding_the_confirmed_header_cannot_get_its_key_revoked(agent: RunningAgent,
                                                                 anchors: Keys) -> None:
    _hide(agent.board, "A")  # the agent once decided "no header: not signed by this key"
    before = trust_store(agent.board)
    with pytest.raises(errors.DeviceStateError, match="signed the confirmed image"):
        agent.client().remote(command(anchors.operator, device_target(agent.board), 1,
                                      "revoke-key", key_id=anchors.firmware.kid))
    assert trust_store(agent.board) == before


def test_hiding_the_trial_header_cannot_keep_a_trial_signed_by_a_revoked_key(
        trial_agent: RunningAgent, anchors: Keys) -> None:
    board = trial_agent.board
    _hide(board, "B")
    result = trial_agent.client().remote(command(anchors.operator, device_target(board), 1,
                                                 "revoke-key",
                                                 key_id=anchors.second_firmware.kid))
    assert "signed by it, marked bad" in result.message
    record = boot_record(board)
    assert record.trial is None and record.slot(record.confirmed.other).status is \
        SlotStatus.BAD
    with pytest.raises(errors.DeviceStateError, match="no image on trial"):
        trial_agent.client().confirm()


def test_a_recovery_signed_header_planted_for_the_confirm_does_not_pass_quarantine(
        trial_agent: RunningAgent, anchors: Keys, sign_image: SignImage) -> None:
    board = trial_agent.board
    trial_agent.client().remote(command(anchors.operator, device_target(board), 1,
                                        "quarantine", recovery_key_id=anchors.recovery.kid))
    recovery_signed = sign_image(payload=b"recovery image", sequence=9,
                                 signer=anchors.recovery)
    header = recovery_signed.read_bytes()[:-len(b"recovery image")]
    saved = board / "B.hdr.genuine"
    shutil.copy(board / "slots" / "B.hdr", saved)
    (board / "slots" / "B.hdr").write_bytes(header)  # only for the moment of the confirm
    before = boot_record(board)
    with pytest.raises(errors.QuarantinedError, match="not signed by recovery key"):
        trial_agent.client().confirm()
    shutil.copy(saved, board / "slots" / "B.hdr")
    assert boot_record(board) == before
    assert reboot(open_board(board)).slot == "B"  # the genuine trial still boots as a trial
