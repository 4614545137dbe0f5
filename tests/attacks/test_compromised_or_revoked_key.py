"""Attack: a compromised or revoked signing key. The attacker holds a signing key: either one
the device never trusted, or the author's old key, which leaked and which the device's owner
has since revoked (the anchor stays in the trust store, marked revoked). Neither can get an
image installed, nor booted; and the revocation cannot be undone by putting back the secure
storage from before it.

(The signed revoke command of the remote-action protocol is built separately; here the
revocation is written at library level, as that command will write it.)
"""

from __future__ import annotations

import pytest

from sfupdate.errors import StorageIntegrityError, UnknownKeyError
from sfupdate.formats.sfui import TrustedKey
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.records import Role, SlotStatus
from tests.device_world import DeviceWorld


def test_key_that_is_not_a_trust_anchor_is_refused(world: DeviceWorld,
                                                   attacker_key: FileSigner) -> None:
    assert TrustedKey(attacker_key.public_key).kid not in {
        a.kid for a in world.trust_store().anchors}
    with world.unchanged(), pytest.raises(UnknownKeyError):
        world.install(world.image(2, signer=attacker_key))


def test_leaked_key_is_useless_once_rotated_out(world: DeviceWorld,
                                                attacker_key: FileSigner) -> None:
    """The owner rotates: a new anchor is added, the fleet moves to an image signed with it,
    then the old (leaked) key is revoked. The attacker's images signed with the old key —
    with any sequence number — are refused from then on."""
    leaked, new_key = world.author, attacker_key  # (any fresh key will do as the new one)
    world.add_firmware_anchor(TrustedKey(new_key.public_key))
    world.install(world.image(2, signer=new_key))
    world.boot()
    world.client().confirm()
    world.revoke(TrustedKey(leaked.public_key))
    assert world.trust_store().keys(Role.FIRMWARE) == [TrustedKey(new_key.public_key)]

    with world.unchanged():
        for sequence in (3, 1000):
            with pytest.raises(UnknownKeyError):
                world.install(world.image(sequence, signer=leaked))
    assert world.boot().sequence == 2
    assert world.install(world.image(3, signer=new_key)).sequence == 3


def test_trial_signed_by_a_key_revoked_before_it_booted_is_never_run(
        world: DeviceWorld, attacker_key: FileSigner) -> None:
    """A second author key signs an image, which gets installed; then that key is found
    leaked and revoked before the next reboot. The boot verifies every slot against the
    anchors of the moment: the trial is marked bad, the confirmed image (signed by the other,
    still trusted key) boots."""
    second = attacker_key
    world.add_firmware_anchor(TrustedKey(second.public_key))
    world.install(world.image(2, signer=second))
    world.revoke(TrustedKey(second.public_key))
    result = world.boot()
    assert (result.slot, result.sequence) == ("A", 1)
    assert "failed verification" in " ".join(result.events)
    assert world.record().slot(Slot.B).status is SlotStatus.BAD


def test_revocation_cannot_be_rolled_back(world: DeviceWorld,
                                          attacker_key: FileSigner) -> None:
    world.add_firmware_anchor(TrustedKey(attacker_key.public_key))
    before_revocation = world.save_secure_storage()
    world.revoke(TrustedKey(attacker_key.public_key))
    world.restore_secure_storage(before_revocation)
    with pytest.raises(StorageIntegrityError):
        world.install(world.image(2, signer=attacker_key))
    with pytest.raises(StorageIntegrityError):
        world.boot()
