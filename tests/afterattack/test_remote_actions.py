"""Signed remote actions through a real agent process: every action, every refusal.

After each refusal the device state (status, slots, secure storage, hardware registers) is
unchanged, except where a refusal for the device's state spends the command number (that is
the point: such a command can never be replayed later)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.formats.remote import Target, verify_token
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.records import Role, SlotStatus
from sfupdate.secure.board.sim import open_board
from tests.afterattack.conftest import CopyBoard, Keys
from tests.afterattack.support import (
    boot_record,
    class_target,
    command,
    device_target,
    events,
    remote,
    serve_agent,
    trust_store,
)
from tests.agent.support import RunningAgent, file_chunks
from tests.conftest import SignImage
from tests.world import CLASS, FIRMWARE_V2, VENDOR, reboot


def device_key(board: Path) -> TrustedKey:
    from sfupdate import keys
    return keys.load_public_key(board / "device-id.pub.pem")


def send(agent: RunningAgent, data: bytes):  # type: ignore[no-untyped-def]
    return agent.client().remote(data)


# --- every action ---------------------------------------------------------------------------


def test_inspect_answers_with_an_attestation_for_the_commands_nonce(
        agent: RunningAgent, anchors: Keys) -> None:
    nonce = b"operator-nonce-01"
    result = send(agent, command(anchors.operator, device_target(agent.board), 1, "inspect",
                                 nonce=nonce))
    assert (result.action, result.number) == ("inspect", 1)
    claims = verify_token(result.token, device_key(agent.board), nonce)
    assert claims.running_slot == "A" and claims.rollback_floor == 1
    assert claims.last_command == 1
    assert remote(agent.board).last_command == 1


def test_every_other_answer_is_an_attestation_bound_to_the_command(
        agent: RunningAgent, anchors: Keys) -> None:
    signed = command(anchors.operator, device_target(agent.board), 1, "reboot")
    result = send(agent, signed)
    claims = verify_token(result.token, device_key(agent.board), hashlib.sha256(signed).digest())
    assert claims.last_command == 1
    with pytest.raises(errors.AuthenticationError):
        verify_token(result.token, device_key(agent.board), b"another nonce...")


def test_revert_of_a_running_trial_boots_the_confirmed_image_at_next_boot(
        trial_agent: RunningAgent, anchors: Keys) -> None:
    board = trial_agent.board
    before = boot_record(board)
    result = send(trial_agent, command(anchors.operator, device_target(board), 1, "revert"))
    assert "trial slot B (sequence 2) marked bad" in result.message
    after = boot_record(board)
    assert after.slot(before.trial).status is SlotStatus.BAD  # type: ignore[arg-type]
    assert after.trial is None and after.floor == before.floor == 1
    booted = reboot(open_board(board))
    assert (booted.slot, booted.trial, booted.sequence) == ("A", False, 1)
    assert [e.kind for e in events(board).events] == ["command"]


def test_revert_of_the_confirmed_image_is_refused_and_spends_the_number(
        agent: RunningAgent, anchors: Keys) -> None:
    before = boot_record(agent.board)
    with pytest.raises(errors.DeviceStateError, match="no other authentic image"):
        send(agent, command(anchors.operator, device_target(agent.board), 5, "revert"))
    assert boot_record(agent.board) == before
    assert remote(agent.board).last_command == 5  # the same command can never come back
    assert events(agent.board).events[-1].kind == "command-refused"
    with pytest.raises(errors.ReplayError):
        send(agent, command(anchors.operator, device_target(agent.board), 5, "revert"))


def test_revert_onto_a_tampered_confirmed_image_is_refused(
        trial_agent: RunningAgent, anchors: Keys) -> None:
    board = trial_agent.board
    with (board / "slots" / "A.img").open("r+b") as f:
        f.write(b"EVIL")
    before = boot_record(board)
    with pytest.raises(errors.DeviceStateError, match="refusing to revert onto it"):
        send(trial_agent, command(anchors.operator, device_target(board), 1, "revert"))
    assert boot_record(board) == before  # the trial keeps running: still a bootable image


def test_a_class_target_reaches_every_device_of_the_class(
        agent: RunningAgent, anchors: Keys) -> None:
    result = send(agent, command(anchors.operator, class_target(), 1, "reboot"))
    assert "reboot requested" in result.message
    assert events(agent.board).events[-1].subject == "reboot"


def test_quarantine_accepts_only_the_recovery_key_until_released(
        agent: RunningAgent, anchors: Keys, sign_image: SignImage) -> None:
    target = device_target(agent.board)
    recovery_kid = anchors.recovery.kid
    send(agent, command(anchors.operator, target, 1, "quarantine",
                        recovery_key_id=recovery_kid))
    assert remote(agent.board).quarantine == recovery_kid
    normal = sign_image(payload=FIRMWARE_V2, sequence=2)  # the firmware key
    with pytest.raises(errors.QuarantinedError, match="quarantined"):
        agent.client().install(file_chunks(normal))
    assert boot_record(agent.board).slot(boot_record(agent.board).confirmed.other).status \
        is SlotStatus.EMPTY  # nothing was written
    repaired = sign_image(payload=FIRMWARE_V2 + b"fixed", sequence=2, signer=anchors.recovery)
    assert agent.client().install(file_chunks(repaired)).sequence == 2
    send(agent, command(anchors.operator, target, 2, "release"))
    assert remote(agent.board).quarantine is None
    newer = sign_image(payload=FIRMWARE_V2 + b"newer", sequence=3)
    assert agent.client().install(file_chunks(newer)).sequence == 3


def test_quarantine_confirms_only_a_trial_signed_by_the_recovery_key(
        trial_agent: RunningAgent, anchors: Keys) -> None:
    send(trial_agent, command(anchors.operator, device_target(trial_agent.board), 1,
                              "quarantine", recovery_key_id=anchors.recovery.kid))
    before = boot_record(trial_agent.board)
    with pytest.raises(errors.QuarantinedError, match="not signed by recovery key"):
        trial_agent.client().confirm()
    assert boot_record(trial_agent.board) == before


def test_quarantine_needs_a_provisioned_recovery_anchor(agent: RunningAgent,
                                                        anchors: Keys) -> None:
    for number, kid in enumerate((anchors.operator.kid, anchors.firmware.kid, b"\x07" * 32), 1):
        with pytest.raises(errors.DeviceStateError, match="not a provisioned recovery anchor"):
            send(agent, command(anchors.operator, device_target(agent.board), number,
                                "quarantine", recovery_key_id=kid))
    assert remote(agent.board).quarantine is None


def test_release_without_quarantine_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    with pytest.raises(errors.DeviceStateError, match="not quarantined"):
        send(agent, command(anchors.operator, device_target(agent.board), 1, "release"))


def test_revoke_key_takes_effect_at_once_and_survives_a_restart(
        board_dir: Path, anchors: Keys, sign_image: SignImage, socket_dir: Path) -> None:
    revoked = anchors.second_firmware
    image = sign_image(payload=FIRMWARE_V2, sequence=2, signer=revoked)
    with serve_agent(board_dir, socket_dir) as agent:
        result = send(agent, command(anchors.operator, device_target(board_dir), 1,
                                     "revoke-key", key_id=revoked.kid))
        assert "revoked" in result.message
        with pytest.raises(errors.UnknownKeyError):
            agent.client().install(file_chunks(image))
    assert revoked.kid not in [k.kid for k in trust_store(board_dir).keys(Role.FIRMWARE)]
    with serve_agent(board_dir, socket_dir) as again, pytest.raises(errors.UnknownKeyError):
        again.client().install(file_chunks(image))


def test_revoking_the_key_of_a_trial_drops_the_trial(trial_agent: RunningAgent,
                                                     anchors: Keys) -> None:
    board = trial_agent.board
    result = send(trial_agent, command(anchors.operator, device_target(board), 1, "revoke-key",
                                       key_id=anchors.second_firmware.kid))
    assert "trial slot B, signed by it, marked bad" in result.message
    record = boot_record(board)
    assert record.trial is None and record.slot(record.confirmed.other).status is SlotStatus.BAD
    booted = reboot(open_board(board))
    assert (booted.slot, booted.sequence) == ("A", 1)


def test_revoking_the_key_of_the_confirmed_image_is_refused(agent: RunningAgent,
                                                            anchors: Keys) -> None:
    before = trust_store(agent.board)
    with pytest.raises(errors.DeviceStateError, match="signed the confirmed image"):
        send(agent, command(anchors.operator, device_target(agent.board), 1, "revoke-key",
                            key_id=anchors.firmware.kid))
    assert trust_store(agent.board) == before
    assert reboot(open_board(agent.board)).slot == "A"


def test_revoke_key_refuses_keys_that_are_not_firmware_anchors(agent: RunningAgent,
                                                               anchors: Keys) -> None:
    for number, kid in enumerate((anchors.operator.kid, anchors.recovery.kid, b"\x05" * 32), 1):
        with pytest.raises(errors.DeviceStateError, match="no active firmware anchor"):
            send(agent, command(anchors.operator, device_target(agent.board), number,
                                "revoke-key", key_id=kid))


def test_revoking_the_last_firmware_anchor_without_a_recovery_anchor_is_refused(
        copy_board: CopyBoard, no_recovery_template: Path, anchors: Keys,
        socket_dir: Path) -> None:
    board = copy_board(no_recovery_template)
    with serve_agent(board, socket_dir) as agent:
        send(agent, command(anchors.operator, device_target(board), 1, "revoke-key",
                            key_id=anchors.second_firmware.kid))
        with pytest.raises(errors.DeviceStateError, match="last firmware anchor"):
            send(agent, command(anchors.operator, device_target(board), 2, "revoke-key",
                                key_id=anchors.firmware.kid))
    assert [k.kid for k in trust_store(board).keys(Role.FIRMWARE)] == [anchors.firmware.kid]


def test_a_compromised_firmware_key_is_replaced_through_quarantine_and_recovery(
        agent: RunningAgent, anchors: Keys, sign_image: SignImage) -> None:
    """The whole recovery story: quarantine, a recovery-signed image installed, booted and
    confirmed, then BOTH firmware keys revoked (the last one too: a recovery path exists)."""
    board, target = agent.board, device_target(agent.board)
    send(agent, command(anchors.operator, target, 1, "quarantine",
                        recovery_key_id=anchors.recovery.kid))
    repaired = sign_image(payload=FIRMWARE_V2, sequence=5, signer=anchors.recovery)
    agent.client().install(file_chunks(repaired))
    assert reboot(open_board(board)).sequence == 5
    assert agent.client().confirm().rollback_floor == 5
    send(agent, command(anchors.operator, target, 2, "revoke-key",
                        key_id=anchors.second_firmware.kid))
    send(agent, command(anchors.operator, target, 3, "revoke-key", key_id=anchors.firmware.kid))
    assert trust_store(board).keys(Role.FIRMWARE) == []
    booted = reboot(open_board(board))  # the recovery-signed image still boots
    assert (booted.sequence, booted.healthy) == (5, True)


def test_reboot_is_recorded(agent: RunningAgent, anchors: Keys) -> None:
    result = send(agent, command(anchors.operator, device_target(agent.board), 1, "reboot"))
    assert "sfu board boot" in result.message
    assert events(agent.board).events[-1].detail.endswith(result.message)


# --- every refusal: nothing changes ---------------------------------------------------------


def assert_refused(agent: RunningAgent, data: bytes, error: type[errors.SfuError]) -> None:
    before = agent.snapshot()
    with pytest.raises(error):
        send(agent, data)
    assert agent.snapshot() == before
    agent.assert_alive()


def test_replayed_command_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    signed = command(anchors.operator, device_target(agent.board), 3, "reboot")
    send(agent, signed)
    assert_refused(agent, signed, errors.ReplayError)


def test_older_command_number_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    send(agent, command(anchors.operator, device_target(agent.board), 3, "reboot"))
    assert_refused(agent, command(anchors.operator, device_target(agent.board), 2, "reboot"),
                   errors.ReplayError)


def test_command_for_another_device_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    other = Target(ueid=b"\x01" + hashlib.sha256(b"another device").digest())
    assert_refused(agent, command(anchors.operator, other, 1, "reboot"), errors.WrongDeviceError)


def test_command_for_another_class_or_vendor_is_refused(agent: RunningAgent,
                                                        anchors: Keys) -> None:
    from sfupdate.formats.sfui import class_uuid, vendor_uuid
    other_class = Target(vendor_id=VENDOR, class_id=class_uuid(VENDOR, "other-board"))
    assert_refused(agent, command(anchors.operator, other_class, 1, "reboot"),
                   errors.WrongClassError)
    other_vendor = Target(vendor_id=vendor_uuid("evil.example"), class_id=CLASS)
    assert_refused(agent, command(anchors.operator, other_vendor, 1, "reboot"),
                   errors.WrongVendorError)


def test_command_signed_by_an_unknown_key_is_refused(agent: RunningAgent) -> None:
    from sfupdate import keys
    stranger = FileSigner(keys.generate_private_key("ES256"))
    assert_refused(agent, command(stranger, device_target(agent.board), 1, "revert"),
                   errors.UnknownKeyError)


def test_firmware_or_recovery_key_cannot_sign_commands(agent: RunningAgent,
                                                       anchors: Keys) -> None:
    for key in (anchors.firmware, anchors.second_firmware, anchors.recovery):
        assert_refused(agent, command(key, device_target(agent.board), 1, "reboot"),
                       errors.UnknownKeyError)


def test_expired_command_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    past = int(time.time()) - 1
    assert_refused(agent, command(anchors.operator, device_target(agent.board), 1, "reboot",
                                  expires=past), errors.ExpiredError)


def test_unexpired_command_is_accepted(agent: RunningAgent, anchors: Keys) -> None:
    future = int(time.time()) + 600
    assert send(agent, command(anchors.operator, device_target(agent.board), 1, "reboot",
                               expires=future)).number == 1


def test_inspect_with_a_too_short_nonce_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    assert_refused(agent, command(anchors.operator, device_target(agent.board), 1, "inspect",
                                  nonce=b"short"), errors.SchemaError)


@pytest.mark.parametrize("cut", [0, 1, 10, 40, -1])
def test_truncated_command_is_refused(agent: RunningAgent, anchors: Keys, cut: int) -> None:
    signed = command(anchors.operator, device_target(agent.board), 1, "revert")
    data = signed[:cut] if cut >= 0 else signed[:-1]
    if not data:  # an empty command never leaves the client: the wire schema forbids it
        with pytest.raises(errors.IpcError):
            send(agent, data)
        return
    assert_refused(agent, data, errors.FormatError)


def test_every_bit_flip_in_a_command_is_refused(agent: RunningAgent, anchors: Keys) -> None:
    signed = command(anchors.operator, device_target(agent.board), 1, "revert")
    before = agent.snapshot()
    for offset in range(0, len(signed), 3):  # one flip per 3 bytes: headers, payload, signature
        flipped = bytearray(signed)
        flipped[offset] ^= 0x10
        with pytest.raises((errors.FormatError, errors.AuthenticationError, errors.IpcError)):
            send(agent, bytes(flipped))
    assert agent.snapshot() == before
    agent.assert_alive()


def test_oversized_and_garbage_commands_are_refused(agent: RunningAgent) -> None:
    before = agent.snapshot()
    for data in (b"\xff" * 100, b"not cbor at all", b"\x00" * (16 * 1024 + 1)):
        with pytest.raises((errors.FormatError, errors.IpcError)):
            send(agent, data)
    assert agent.snapshot() == before


def test_a_command_cannot_pass_for_a_policy_or_the_reverse(agent: RunningAgent,
                                                           anchors: Keys) -> None:
    from tests.afterattack.support import policy
    signed_command = command(anchors.operator, device_target(agent.board), 1, "reboot")
    signed_policy = policy(anchors.operator, device_target(agent.board), 1)
    before = agent.snapshot()
    with pytest.raises(errors.SchemaError):
        agent.client().install_policy(signed_command)
    with pytest.raises(errors.SchemaError):
        send(agent, signed_policy)
    assert agent.snapshot() == before
