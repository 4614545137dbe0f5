"""Attack: the Rich OS hands the agent an arbitrary image — its own firmware with a broken
signature, with no signature at all, or properly signed by a key the device never trusted.

The agent authenticates the manifest before it writes a byte: each one is refused with a
precise error, and the device (status, both slots and headers, secure storage) is exactly as
it was.
"""

from __future__ import annotations

import pytest

from sfupdate.errors import (
    AuthenticationError,
    ManifestDigestError,
    MissingMemberError,
    SignatureError,
    UnknownKeyError,
)
from sfupdate.keys.files import FileSigner
from tests.device_world import (
    DeviceWorld,
    auth_wrapper,
    envelope,
    firmware,
    flip,
    manifest,
)


def test_image_with_a_broken_signature_is_refused(world: DeviceWorld) -> None:
    body = firmware(2)
    auth = auth_wrapper(manifest(2, body), world.author)
    genuine = envelope(manifest(2, body), body, None, auth=auth)
    in_signature = genuine.index(auth) + len(auth) - 10  # the COSE signature ends the wrapper
    with world.unchanged(), pytest.raises(SignatureError):
        world.install(flip(genuine, in_signature))


def test_image_whose_manifest_was_edited_after_signing_is_refused(world: DeviceWorld) -> None:
    body = firmware(2)
    signed_for_2 = auth_wrapper(manifest(2, body), world.author)
    # The attacker raises the sequence number to 3 and keeps the signature made for 2.
    edited = envelope(manifest(3, body), body, None, auth=signed_for_2)
    with world.unchanged(), pytest.raises(ManifestDigestError):
        world.install(edited)


def test_unsigned_image_is_refused(world: DeviceWorld) -> None:
    unsigned = world.image(2, signer=None)
    with world.unchanged(), pytest.raises(MissingMemberError, match="unsigned"):
        world.install(unsigned)


def test_image_signed_by_an_unknown_key_is_refused(world: DeviceWorld,
                                                  attacker_key: FileSigner) -> None:
    with world.unchanged(), pytest.raises(UnknownKeyError):
        world.install(world.image(2, signer=attacker_key))


def test_unknown_key_claiming_the_trusted_key_id_is_refused(world: DeviceWorld,
                                                            attacker_key: FileSigner) -> None:
    """The attacker's signature names the device's key ID: the signature still fails."""

    class Impostor:
        algorithm = attacker_key.algorithm
        kid = world.author.kid

        def sign(self, data: bytes) -> bytes:
            return attacker_key.sign(data)

    body = firmware(2)
    forged = envelope(manifest(2, body), body, Impostor())
    with world.unchanged(), pytest.raises(SignatureError):
        world.install(forged)


def test_an_honest_image_still_installs_afterwards(world: DeviceWorld,
                                                   attacker_key: FileSigner) -> None:
    for bad in (world.image(2, signer=None), world.image(2, signer=attacker_key)):
        with pytest.raises((AuthenticationError, MissingMemberError)):
            world.install(bad)
    assert world.install(world.image(2)).sequence == 2
