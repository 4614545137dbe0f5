"""A board of two components installs, boots, confirms and reverts an SFUI of several
components as ONE set: the agent streams each named component into its slot of the inactive
side, copies the others from the confirmed side, and the kernel records the whole set in one
write; a bad digest in any component, a component the board does not have, or a kept image
that no longer matches its record leaves nothing recorded."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import pytest

from sfupdate import keys
from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.components import sign_components
from sfupdate.errors import (
    DeviceStateError,
    IntegrityError,
    PayloadDigestError,
    PayloadTooShortError,
    UnknownComponentError,
)
from sfupdate.formats.remote import RemoteCommand, Target
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.records import ImageRecord, SlotStatus
from sfupdate.secure.board.sim import SimBoard
from sfupdate.secure.kernel import Kernel, SecureState
from sfupdate.secure.kernel.state import _revoke_key
from sfupdate.secure.kernel.verify import HEALTH_FAIL_MARKER
from tests.components.conftest import COMPONENTS, CopyBoard, SignSet, app_image, boot_image
from tests.world import CLASS, VENDOR, fresh, provision_board, reboot


def install_file(board: SimBoard, image: Path | bytes) -> None:
    data = image.read_bytes() if isinstance(image, Path) else image
    install(Device(board), io.BytesIO(data))


def component_bytes(board: SimBoard, name: str, slot: Slot, size: int) -> bytes:
    return b"".join(board.components[name].read(slot, size))


def state(board: SimBoard) -> SecureState:
    return Kernel(board.storage).state()


def test_a_two_component_image_installs_boots_confirms_and_reverts_as_one(
        set_board: CopyBoard, sign_set: SignSet) -> None:
    board = fresh(set_board())
    install_file(board, sign_set(2, boot=boot_image(2), app=app_image(2)))
    trial = state(board).boot.trial_image
    assert trial is not None and trial.components is not None
    assert [(c.name, c.sequence) for c in trial.components] == [("boot", 2), ("app", 2)]
    assert component_bytes(board, "boot", Slot.B, len(boot_image(2))) == boot_image(2)
    assert component_bytes(board, "app", Slot.B, len(app_image(2))) == app_image(2)

    booted = reboot(board)
    assert (booted.slot, booted.trial, booted.sequence, booted.healthy) == ("B", True, 2, True)
    Kernel(board.storage).confirm()
    assert state(board).boot.floor == 2 and state(board).boot.confirmed is Slot.B

    # a set whose app fails its health check: the whole set reverts to the confirmed one
    install_file(board, sign_set(3, boot=boot_image(3),
                                 app=app_image(3) + HEALTH_FAIL_MARKER))
    booted = reboot(board)
    assert (booted.slot, booted.sequence) == ("B", 2)
    record = state(board).boot
    assert record.slot(Slot.A).status is SlotStatus.BAD and record.floor == 2
    assert reboot(board).sequence == 2  # the confirmed set still verifies, every component


def test_components_the_image_does_not_name_keep_their_image(
        set_board: CopyBoard, sign_set: SignSet) -> None:
    board = fresh(set_board())
    install_file(board, sign_set(2, app=app_image(2)))
    trial = state(board).boot.trial_image
    assert trial is not None and trial.components is not None
    kept, new = trial.components
    assert (kept.name, kept.sequence, new.name, new.sequence) == ("boot", 1, "app", 2)
    assert kept.digest == hashlib.sha256(boot_image(1)).digest()
    assert component_bytes(board, "boot", Slot.B, len(boot_image(1))) == boot_image(1)
    assert reboot(board).sequence == 2  # the kept boot verifies against its own header
    Kernel(board.storage).confirm()
    assert reboot(board).sequence == 2  # and stays bootable above the raised floor


def test_a_bad_digest_in_the_second_component_records_nothing(
        set_board: CopyBoard, sign_set: SignSet) -> None:
    board = fresh(set_board())
    image = sign_set(2, boot=boot_image(2), app=app_image(2)).read_bytes()
    with pytest.raises(PayloadTooShortError):  # an earlier install cut short: B is invalid
        install_file(board, image[:-1])
    before = state(board)
    assert before.boot.slot(Slot.B).status is SlotStatus.INVALID

    flipped = bytearray(image)
    flipped[-100] ^= 1  # in the payload that comes second in the envelope ("#boot")
    with pytest.raises(PayloadDigestError):
        install_file(board, bytes(flipped))
    assert state(board) == before  # nothing recorded, not even the first component
    assert reboot(board).sequence == 1


def test_a_component_the_board_does_not_have_is_refused_before_a_write(
        set_board: CopyBoard, sign_set: SignSet) -> None:
    board = fresh(set_board())
    before, counter = state(board), board.storage.write_counter
    with pytest.raises(UnknownComponentError, match="kernel"):
        install_file(board, sign_set(2, app=app_image(2), kernel=b"a kernel" * 100))
    assert state(board) == before and board.storage.write_counter == counter


def test_a_kept_image_that_no_longer_matches_its_record_is_not_copied(
        set_board: CopyBoard, sign_set: SignSet) -> None:
    path = set_board()
    with open(path / "slots" / "A.img", "r+b") as f:  # the confirmed boot component
        f.write(b"X")
    board = fresh(path)
    with pytest.raises(IntegrityError, match="boot"):
        install_file(board, sign_set(2, app=app_image(2)))
    record = state(board).boot
    assert record.trial is None and record.slot(Slot.B).status is SlotStatus.INVALID


def test_the_kernel_records_no_set_that_changes_a_kept_component(
        set_board: CopyBoard, sign_set: SignSet) -> None:
    """A set may change a component only by naming it: the kernel refuses a record whose kept
    component differs from the confirmed one's (defence in depth behind the agent)."""
    board = fresh(set_board())
    kernel = Kernel(board.storage)
    confirmed = state(board).boot.confirmed_image
    assert confirmed.components is not None
    boot, app = confirmed.components
    forged_boot = replace(boot, digest=bytes(32))
    new_app = replace(app, sequence=2, digest=hashlib.sha256(b"x").digest())
    image = ImageRecord.of_set(2, [forged_boot, new_app], confirmed.signer,
                               confirmed.vendor_id, confirmed.class_id, None)
    slot = kernel.begin_install()
    with pytest.raises(DeviceStateError, match="boot"):
        kernel.record_trial(slot, image, [confirmed.signer])


def test_a_kept_components_signer_stays_a_signer_of_the_set(
        tmp_path: Path, sign_set: SignSet, es256_trusted: TrustedKey) -> None:
    """The boot component was signed by the first key, the set that kept it by a second:
    revoking the first key is refused while that set is confirmed (it would leave nothing to
    boot), and the boot of the set needs both keys active."""
    second = FileSigner(keys.generate_private_key("ES256"))
    provision_board(tmp_path / "b", sign_set(1, boot=boot_image(1), app=app_image(1)),
                    [es256_trusted, TrustedKey(second.public_key)], components=COMPONENTS)
    board = fresh(tmp_path / "b")
    (tmp_path / "app.bin").write_bytes(app_image(2))
    sign_components([("app", tmp_path / "app.bin")], tmp_path / "app2.sfui", second,
                    ImageSpec(2, VENDOR, CLASS))
    install_file(board, tmp_path / "app2.sfui")
    assert reboot(board).sequence == 2
    confirmed = Kernel(board.storage).confirm()
    image = confirmed.boot.confirmed_image
    assert image.signer == second.kid and image.signers() == [second.kid, es256_trusted.kid]
    assert len(confirmed.signer_keys(image)) == 2

    revoke = RemoteCommand(Target(vendor_id=VENDOR, class_id=CLASS), 1, "revoke-key",
                           {"key_id": es256_trusted.kid})
    with pytest.raises(DeviceStateError, match="signed the confirmed image"):
        _revoke_key(confirmed, revoke, None)
