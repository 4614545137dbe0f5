"""Encrypted payloads (draft-ietf-suit-firmware-encryption) on a real device: an SFUI
encrypted for a device installs there and boots; on any other device it is refused before a
byte is written. A wrapped key that does not unwrap is refused before a byte is written; a
tampered ciphertext is caught by its tag (GCM) or by the signed plaintext digest (CTR) and the
slot never becomes bootable.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate import errors
from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.encrypt import PayloadEncryption, load_recipient_key
from sfupdate.authoring.author.sign import build_manifest
from sfupdate.cli.main import main
from sfupdate.formats.sfui import EnvelopeReader, ImageInfo, TrustedKey
from sfupdate.formats.sfui.encryption import ALG_A128CTR, ALG_A128GCM, EncryptionInfo
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.hal import Slot
from tests.device_world import DeviceWorld, envelope, firmware, flip, serving
from tests.world import CLASS, VENDOR, encryption_public_path, provision_board

FLEET_KEK = bytes(range(16))


@pytest.fixture
def other(tmp_path: Path, es256_signer: FileSigner) -> Iterator[DeviceWorld]:
    """A second device of the same vendor and class, trusting the same author, provisioned
    with a pre-shared key-encryption key."""
    (tmp_path / "other").mkdir()
    with serving(tmp_path / "other", es256_signer, payload_kek=FLEET_KEK) as device:
        yield device


def recipient(world: DeviceWorld) -> ec.EllipticCurvePublicKey:
    """The device's public encryption key, as provisioning exported it."""
    return load_recipient_key(encryption_public_path(world.root))


def encrypted_image(world: DeviceWorld, sequence: int,
                    recipients: Sequence[ec.EllipticCurvePublicKey], *,
                    algorithm: int = ALG_A128GCM, wrapped_key_flip: bool = False,
                    keks: Sequence[bytes] = ()) -> tuple[bytes, bytes]:
    """(the SFUI, its plaintext): the payload encrypted for `recipients`, the manifest (with
    the plaintext's digest and size) signed by the device's author. `wrapped_key_flip`: the
    author signs a wrapped key with one bit wrong."""
    plaintext = firmware(sequence, 30_000)
    encryption = PayloadEncryption(recipients, keks, algorithm)
    info = encryption.info
    if wrapped_key_flip:
        first = info.recipients[0]
        info = replace(info, recipients=(replace(first, wrapped_key=flip(first.wrapped_key, 5)),
                                         *info.recipients[1:]))
    encryptor = encryption.encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finish()
    manifest = build_manifest(ImageSpec(sequence, VENDOR, CLASS),
                              hashlib.sha256(plaintext).digest(), len(plaintext), None,
                              info.encode())
    return envelope(manifest.encode(), ciphertext, world.author), plaintext


def test_an_image_installs_on_the_device_it_was_made_for_and_no_other(
        world: DeviceWorld, other: DeviceWorld) -> None:
    for_world, plaintext = encrypted_image(world, 2, [recipient(world)])
    for_other, _ = encrypted_image(other, 2, [recipient(other)])
    with world.unchanged(), pytest.raises(errors.NotARecipientError, match="not for"):
        world.install(for_other)
    with other.unchanged(), pytest.raises(errors.NotARecipientError):
        other.install(for_world)

    assert world.install(for_world).sequence == 2
    assert world.slot_bytes(Slot.B)[:len(plaintext)] == plaintext  # decrypted into the slot
    booted = world.boot()  # stage 2 verifies the slot's plaintext against the signed digest
    assert (booted.slot, booted.trial, booted.sequence) == ("B", True, 2)
    assert other.install(for_other).sequence == 2


def test_one_image_for_several_devices_installs_on_each(world: DeviceWorld,
                                                        other: DeviceWorld) -> None:
    image, _ = encrypted_image(world, 3, [recipient(other), recipient(world)])
    assert world.install(image).sequence == 3
    assert other.install(image).sequence == 3


def test_a_pre_shared_key_encryption_key_decrypts_only_where_it_was_provisioned(
        world: DeviceWorld, other: DeviceWorld) -> None:
    image, plaintext = encrypted_image(other, 2, [], keks=[FLEET_KEK])
    with world.unchanged(), pytest.raises(errors.NotARecipientError, match="A128KW"):
        world.install(image)
    assert other.install(image).sequence == 2
    assert other.slot_bytes(Slot.B)[:len(plaintext)] == plaintext


def test_a_wrapped_key_that_does_not_unwrap_is_refused_before_a_byte_is_written(
        world: DeviceWorld) -> None:
    image, _ = encrypted_image(world, 2, [recipient(world)], wrapped_key_flip=True)
    with world.unchanged(), pytest.raises(errors.KeyUnwrapError, match="does not unwrap"):
        world.install(image)


def test_a_wrapped_key_changed_in_transit_breaks_the_signature(world: DeviceWorld) -> None:
    image, _ = encrypted_image(world, 2, [recipient(world)])
    wrapped = EncryptionInfo.decode(_encryption_info(image)).recipients[0].wrapped_key
    with world.unchanged(), pytest.raises(errors.ManifestDigestError):
        world.install(flip(image, image.index(wrapped) + 3))


def _encryption_info(image: bytes) -> bytes:
    """The manifest's encryption info, read as the author wrote it (no signature checked)."""
    reader = EnvelopeReader(io.BytesIO(image))
    info = ImageInfo.from_manifest(reader.unverified_manifest()).encryption_info
    assert info is not None
    return info


@pytest.mark.parametrize(("algorithm", "refusal"), [
    (ALG_A128GCM, errors.CiphertextTagError), (ALG_A128CTR, errors.PayloadDigestError)])
def test_a_tampered_ciphertext_never_becomes_bootable(
        world: DeviceWorld, algorithm: int, refusal: type[errors.SfuError]) -> None:
    image, _ = encrypted_image(world, 2, [recipient(world)], algorithm=algorithm)
    before = world.snapshot()
    with pytest.raises(refusal):
        world.install(flip(image, len(image) - 20_000))
    after = world.snapshot()
    assert after["status"]["slots"]["B"]["state"] == "invalid"
    assert after["status"]["trial_slot"] is None
    for name in ("slots/A.img", "slots/A.hdr"):
        assert after["files"][name] == before["files"][name]
    assert "slots/B.hdr" not in after["files"]
    assert world.boot().slot == "A"
    assert world.install(image).sequence == 2  # the genuine image, afterwards, installs


def test_the_exported_encryption_key_is_the_one_provisioning_wrote(
        world: DeviceWorld, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["board", "encryption-key", str(world.root)]) == 0
    out = capsys.readouterr().out
    assert out.encode() == encryption_public_path(world.root).read_bytes()
    assert b"BEGIN PUBLIC KEY" in out.encode()
    identity = (world.root / "device-id.pub.pem").read_bytes()
    assert identity != out.encode()  # never the signing key


def test_provisioning_refuses_an_encrypted_first_image_before_a_fuse_is_burned(
        tmp_path: Path, es256_signer: FileSigner) -> None:
    """The first image is installed before the device has a key to decrypt with."""
    firmware, image = tmp_path / "v1.bin", tmp_path / "v1.sfui"
    firmware.write_bytes(b"first firmware " * 100)
    recipient_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    sign_firmware(firmware, image, es256_signer, ImageSpec(1, VENDOR, CLASS),
                  encryption=PayloadEncryption([recipient_key]))
    board = tmp_path / "blank"
    with pytest.raises(errors.UnsupportedError, match="encrypted"):
        provision_board(board, image, [TrustedKey(es256_signer.public_key)])
    assert not any((board / "hw" / "otp").iterdir())  # no fuse burned: still blank
