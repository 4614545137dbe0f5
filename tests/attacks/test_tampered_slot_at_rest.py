"""Attack: a slot tampered with at rest. The slots live in flash the Rich OS can write: the
attacker edits an installed image after the agent verified it, swaps in the header of another
genuine image, or copies an old genuine image (with its own genuine header) into the slot.
The boot code verifies every slot against its signed header AND against what boot control
recorded, on every boot: a tampered trial is never run (the confirmed image boots instead),
a tampered confirmed image is refused rather than run.
"""

from __future__ import annotations

import shutil

import pytest

from sfupdate.errors import IntegrityError, PayloadDigestError, SfuError
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.records import SlotStatus
from sfupdate.secure.kernel import Kernel
from tests.device_world import DeviceWorld


def test_trial_image_edited_after_install_is_never_run(world: DeviceWorld) -> None:
    world.install(world.image(2))
    world.flip_file("slots/B.img", 1000)
    result = world.boot()
    assert (result.slot, result.sequence) == ("A", 1)
    assert "failed verification" in " ".join(result.events)
    assert world.record().slot(Slot.B).status is SlotStatus.BAD


def test_confirmed_image_edited_at_rest_is_refused_not_run(world: DeviceWorld) -> None:
    world.flip_file("slots/A.img", 7)
    with pytest.raises(PayloadDigestError, match="refusing to boot confirmed slot A"):
        world.boot()
    events = Kernel(world.board().storage).state().measured.events
    assert [e.stage for e in events] == ["agent"]  # nothing of the firmware was measured


def test_header_of_another_genuine_image_does_not_make_a_slot_bootable(
        world: DeviceWorld) -> None:
    world.install(world.image(2))
    shutil.copy(world.root / "slots" / "A.hdr", world.root / "slots" / "B.hdr")
    result = world.boot()
    assert result.slot == "A" and "failed verification" in " ".join(result.events)


def test_old_genuine_image_copied_into_the_trial_slot_is_refused(world: DeviceWorld) -> None:
    """Slot B is to hold sequence 3; the attacker puts the genuine sequence 1 (bytes and
    header of slot A) there. Everything is validly signed — and not what boot control
    recorded for B."""
    world.install(world.image(3))
    shutil.copy(world.root / "slots" / "A.img", world.root / "slots" / "B.img")
    shutil.copy(world.root / "slots" / "A.hdr", world.root / "slots" / "B.hdr")
    result = world.boot()
    assert (result.slot, result.sequence) == ("A", 1)
    assert world.record().slot(Slot.B).status is SlotStatus.BAD


def test_confirmed_slot_rolled_back_to_an_older_genuine_image_is_refused(
        world: DeviceWorld) -> None:
    """After 2 is confirmed in B, the attacker restores B's old content... of sequence 1 from
    slot A: the boot refuses it (below the floor, and not the recorded image)."""
    world.install(world.image(2))
    world.boot()
    world.client().confirm()
    shutil.copy(world.root / "slots" / "A.img", world.root / "slots" / "B.img")
    shutil.copy(world.root / "slots" / "A.hdr", world.root / "slots" / "B.hdr")
    with pytest.raises(SfuError, match="refusing to boot confirmed slot B"):
        world.boot()


def test_trial_edited_after_its_boot_is_marked_bad_not_confirmed(world: DeviceWorld) -> None:
    """The boot verified the trial and runs it; the attacker then edits its bytes before the
    confirm that would raise the floor to it. The confirm measures the slot again: the trial
    is marked bad, the floor stays, and the confirmed image runs at the next boot."""
    world.install(world.image(2))
    assert world.boot().slot == "B"
    world.flip_file("slots/B.img", 1000)
    with pytest.raises(IntegrityError, match=r"not confirmed: slot B .*marked bad"):
        world.client().confirm()
    record = world.record()
    assert record.slot(Slot.B).status is SlotStatus.BAD and record.floor == 1
    assert (world.boot().slot, world.record().confirmed) == ("A", Slot.A)

