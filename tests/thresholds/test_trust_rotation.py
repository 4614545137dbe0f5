"""A trust update rotates a role's anchors and threshold only when the role's CURRENT
threshold of distinct active anchors signed it; it is never replayed, never leaves a role
unusable, never drops the confirmed image's signer, never brings a revoked anchor back.
Every refusal leaves secure storage untouched (not a single write)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import cbor2
import pytest

from sfupdate.errors import (
    DeviceStateError,
    ReplayError,
    SchemaError,
    ThresholdError,
    UnknownKeyError,
)
from sfupdate.formats.remote import RemoteCommand, sign_command
from sfupdate.formats.remote.trust import TrustUpdate
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.cose_sign import sign
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.records import Role, SlotStatus
from sfupdate.secure.board.sim import open_board
from sfupdate.secure.kernel import Kernel
from tests.thresholds.conftest import (
    TARGET,
    Signers,
    device,
    role,
    signed_image,
    state,
    trust_update,
    unchanged,
)
from tests.world import reboot

UEID = bytes(33)  # the updates target the class; the UEID is not consulted


def apply(board: Path, data: bytes) -> tuple[int, str]:
    return device(board).kernel.update_trust(data, UEID, int(time.time()))


def two_of_three(board: Path, signers: Signers) -> None:
    """Firmware anchors F1, F2, F3 with threshold 2 (signed by F1 alone: today's threshold
    is 1)."""
    f1, f2, f3, _ = signers.firmware
    apply(board, trust_update(2, [f1], role("firmware", 2, f1, f2, f3)))


def test_a_two_of_three_rotation_goes_through(board: Path, signers: Signers) -> None:
    f1, f2, f3, f4 = signers.firmware
    two_of_three(board, signers)
    version, message = apply(board, trust_update(3, [f1, f2], role("firmware", 2, f1, f2, f4)))
    trust = state(board).trust
    assert version == trust.version == 3 and "firmware 2 of 3" in message
    assert {k.kid for k in trust.keys(Role.FIRMWARE)} == {f1.kid, f2.kid, f4.kid}
    assert trust.threshold(Role.FIRMWARE) == 2
    assert trust.active(Role.FIRMWARE, f3.kid) is None  # omitted: revoked, kept
    assert any(a.kid == f3.kid and a.revoked for a in trust.anchors)
    assert state(board).events.events[-1].kind == "trust-updated"


def test_a_one_of_three_rotation_is_refused(board: Path, signers: Signers) -> None:
    f1, f2, _, f4 = signers.firmware
    two_of_three(board, signers)
    with unchanged(board), pytest.raises(ThresholdError, match="needs signatures by 2"):
        apply(board, trust_update(3, [f1], role("firmware", 2, f1, f2, f4)))


def test_one_key_signing_twice_counts_once(board: Path, signers: Signers) -> None:
    f1, f2, _, f4 = signers.firmware
    two_of_three(board, signers)
    update = TrustUpdate(TARGET, 3, (role("firmware", 2, f1, f2, f4),))
    twice = cbor.loads(sign(update.encode(), [f1, f1]), "test")
    assert len(twice.value[3]) == 2
    with unchanged(board), pytest.raises(ThresholdError):
        apply(board, sign(update.encode(), [f1, f1]))


def test_another_roles_signatures_do_not_count(board: Path, signers: Signers) -> None:
    """Three operator anchors cannot rotate the firmware role: only its own anchors can."""
    f1, f2, _, f4 = signers.firmware
    two_of_three(board, signers)
    with unchanged(board), pytest.raises(ThresholdError, match="firmware anchors; 0"):
        apply(board, trust_update(3, signers.operators, role("firmware", 2, f1, f2, f4)))


def test_an_outsider_signature_is_refused(board: Path, signers: Signers) -> None:
    with unchanged(board), pytest.raises(UnknownKeyError):
        apply(board, trust_update(2, [signers.outsider],
                                  role("firmware", 1, signers.firmware[0], signers.outsider)))


def test_a_trust_update_is_never_applied_twice(board: Path, signers: Signers) -> None:
    f1, f2, f3, _ = signers.firmware
    update = trust_update(2, [f1], role("firmware", 2, f1, f2, f3))
    apply(board, update)
    with unchanged(board), pytest.raises(ReplayError, match="not above 2"):
        apply(board, update)
    older = trust_update(2, [f1, f2], role("firmware", 1, f1, f2))
    with unchanged(board), pytest.raises(ReplayError):
        apply(board, older)


def test_an_update_that_changes_nothing_is_refused(board: Path, signers: Signers) -> None:
    f1 = signers.firmware[0]
    with unchanged(board), pytest.raises(DeviceStateError, match="changes no anchor"):
        apply(board, trust_update(2, [f1], role("firmware", 1, f1)))


def test_a_threshold_above_the_anchor_count_is_refused(board: Path,
                                                       signers: Signers) -> None:
    """k > n would leave the role unusable: refused by the format on both sides."""
    f1, f2 = signers.firmware[:2]
    with pytest.raises(SchemaError, match="can never be met"):
        trust_update(2, [f1], role("firmware", 3, f1, f2))
    body = {0: "sfu-trust-update", 1: 1, 2: TARGET.to_cbor(), 3: 2,
            4: [{"role": "firmware", "threshold": 3, "keys": [role("firmware", 1, f1).keys[0],
                                                              role("firmware", 1, f2).keys[0]]}]}
    with unchanged(board), pytest.raises(SchemaError, match="can never be met"):
        apply(board, sign(cbor2.dumps(body, canonical=True), [f1]))


def test_the_confirmed_images_signer_cannot_be_rotated_out(board: Path,
                                                           signers: Signers) -> None:
    f1, f2 = signers.firmware[:2]
    with unchanged(board), pytest.raises(DeviceStateError, match="signed the confirmed image"):
        apply(board, trust_update(2, [f1], role("firmware", 1, f2)))


def test_rotating_out_the_confirmed_signer_after_an_image_by_the_new_anchor(
        board: Path, signers: Signers, tmp_path: Path) -> None:
    """The documented path (docs/after-attack.md): add the new anchor, install and confirm an
    image it signed, then drop the old anchor."""
    f1, f2 = signers.firmware[:2]
    apply(board, trust_update(2, [f1], role("firmware", 1, f1, f2)))
    install(device(board), io.BytesIO(signed_image(tmp_path, 2, [f2]).read_bytes()))
    reboot(board)
    Kernel(open_board(board).storage).confirm()
    apply(board, trust_update(3, [f1], role("firmware", 1, f2)))
    trust = state(board).trust
    assert [k.kid for k in trust.keys(Role.FIRMWARE)] == [f2.kid]
    assert state(board).boot.confirmed_image.signer == f2.kid


def test_a_trial_signed_by_a_dropped_anchor_is_marked_bad(board: Path, signers: Signers,
                                                          tmp_path: Path) -> None:
    f1, f2 = signers.firmware[:2]
    apply(board, trust_update(2, [f1], role("firmware", 1, f1, f2)))
    installed = install(device(board), io.BytesIO(signed_image(tmp_path, 2, [f2]).read_bytes()))
    _, message = apply(board, trust_update(3, [f1], role("firmware", 1, f1)))
    assert "marked bad" in message
    boot = state(board).boot
    assert boot.trial is None and boot.slot(installed.slot).status is SlotStatus.BAD


def test_a_revoked_anchor_never_comes_back(board: Path, signers: Signers) -> None:
    f1, f2, f3, _ = signers.firmware
    apply(board, trust_update(2, [f1], role("firmware", 1, f1, f2)))
    apply(board, trust_update(3, [f1], role("firmware", 1, f1)))
    with unchanged(board), pytest.raises(DeviceStateError, match="never comes back"):
        apply(board, trust_update(4, [f1], role("firmware", 1, f1, f2, f3)))


def test_a_role_without_anchors_is_rooted_by_the_operators(board: Path,
                                                           signers: Signers) -> None:
    """The board has no recovery anchor: the operators' threshold adds one."""
    recovery = signers.firmware[3]
    o1, o2, _ = signers.operators
    apply(board, trust_update(2, [o1, o2, signers.firmware[0]], role("operator", 2,
                                                                    *signers.operators)))
    with unchanged(board), pytest.raises(ThresholdError, match="operator anchors; 1"):
        apply(board, trust_update(3, [o1], role("recovery", 1, recovery)))
    apply(board, trust_update(3, [o1, o2], role("recovery", 1, recovery)))
    assert [k.kid for k in state(board).trust.keys(Role.RECOVERY)] == [recovery.kid]


def test_revoke_key_cannot_leave_fewer_anchors_than_the_threshold(board: Path,
                                                                  signers: Signers) -> None:
    """A signed revoke-key that would leave 1 active anchor under a threshold of 2 is
    refused (its number is spent, the anchors stay)."""
    f1, f2 = signers.firmware[:2]
    apply(board, trust_update(2, [f1], role("firmware", 2, f1, f2)))
    command = sign_command(RemoteCommand(TARGET, 1, "revoke-key", {"key_id": f2.kid},
                                         issued=int(time.time())), signers.operators[0])
    with pytest.raises(DeviceStateError, match="needs 2 signatures but has 1"):
        device(board).kernel.execute(command, UEID, int(time.time()), lambda s: None)
    assert state(board).trust.active(Role.FIRMWARE, f2.kid) is not None


def test_a_trial_judged_under_a_lower_threshold_is_marked_bad(board: Path, signers: Signers,
                                                               tmp_path: Path) -> None:
    """An image records one signer, so a trial installed while one signature was enough
    cannot be counted again when the threshold rises: it must be installed again."""
    f1, f2, f3, _ = signers.firmware
    apply(board, trust_update(2, [f1], role("firmware", 1, f1, f2, f3)))
    installed = install(device(board), io.BytesIO(signed_image(tmp_path, 2, [f2]).read_bytes()))
    _, message = apply(board, trust_update(3, [f1], role("firmware", 2, f1, f2, f3)))
    assert "installed under a firmware threshold of 1, now 2, marked bad" in message
    boot = state(board).boot
    assert boot.trial is None and boot.slot(installed.slot).status is SlotStatus.BAD


def test_a_trial_stays_when_the_threshold_does_not_rise(board: Path, signers: Signers,
                                                        tmp_path: Path) -> None:
    f1, f2, f3, _ = signers.firmware
    apply(board, trust_update(2, [f1], role("firmware", 1, f1, f2)))
    installed = install(device(board), io.BytesIO(signed_image(tmp_path, 2, [f2]).read_bytes()))
    _, message = apply(board, trust_update(3, [f1], role("firmware", 1, f1, f2, f3)))
    assert "marked bad" not in message
    assert state(board).boot.trial is installed.slot
