"""Signed remote commands and attestation tokens: formats, signatures, refusals."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sfupdate import errors
from sfupdate.formats.remote import (
    AttestationClaims,
    IntegrityResult,
    RemoteCommand,
    SlotClaim,
    Target,
    sign_command,
    sign_token,
    ueid_for,
    verify_command,
    verify_token,
)
from sfupdate.formats.remote.eat import RESULT_FAIL, RESULT_SUCCESS
from sfupdate.formats.sfui import TrustedKey, cbor
from sfupdate.keys.files import FileSigner
from tests.world import CLASS, VENDOR


def test_command_round_trip(es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    command = RemoteCommand(Target(ueid=b"\x01" + b"d" * 32), 7, "revoke-key",
                            {"key_id": b"k" * 32}, expires=2_000_000_000)
    decoded, signer = verify_command(sign_command(command, es256_signer), [es256_trusted])
    assert decoded == command
    assert signer.kid == es256_signer.kid


def test_command_from_firmware_key_is_refused(es256_signer: FileSigner,
                                              eddsa_signer: FileSigner) -> None:
    command = RemoteCommand(Target(vendor_id=VENDOR, class_id=CLASS), 1, "reboot")
    with pytest.raises(errors.UnknownKeyError):
        verify_command(sign_command(command, es256_signer), [TrustedKey(eddsa_signer.public_key)])


def test_forged_command_is_refused(es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    signed = bytearray(sign_command(RemoteCommand(Target(ueid=b"\x01" + b"a" * 32), 1,
                                                  "reboot"), es256_signer))
    at = signed.index(b"reboot")
    signed[at:at + 6] = b"revert"  # same length, different action: signature no longer fits
    with pytest.raises(errors.SignatureError):
        verify_command(bytes(signed), [es256_trusted])


@pytest.mark.parametrize(("action", "arguments", "error"), [
    ("format-disk", {}, errors.UnsupportedError),
    ("revoke-key", {}, errors.SchemaError),
    ("revoke-key", {"key_id": "not-bytes"}, errors.SchemaError),
    ("reboot", {"extra": 1}, errors.SchemaError),
])
def test_malformed_command_is_refused(action: str, arguments: dict[str, object],
                                      error: type[Exception]) -> None:
    obj = {1: 1, 2: {1: b"\x01" + b"a" * 32}, 3: 1, 4: action, 5: arguments}
    with pytest.raises(error):
        RemoteCommand.decode(cbor.dumps(obj))


@pytest.mark.parametrize("fields", [
    {}, {"vendor_id": VENDOR}, {"ueid": b"\x01" + b"a" * 32, "vendor_id": VENDOR},
])
def test_an_incomplete_target_is_a_programming_mistake(fields: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="UEID"):
        Target(**fields)


def test_target_matching() -> None:
    device = b"\x01" + b"x" * 32
    assert Target(ueid=device).matches(device, VENDOR, CLASS)
    assert not Target(ueid=b"\x01" + b"y" * 32).matches(device, VENDOR, CLASS)
    assert Target(vendor_id=VENDOR, class_id=CLASS).matches(device, VENDOR, CLASS)
    assert not Target(vendor_id=VENDOR, class_id=uuid.uuid4()).matches(device, VENDOR, CLASS)


def _claims(device: FileSigner, nonce: bytes) -> AttestationClaims:
    return AttestationClaims(
        nonce=nonce, ueid=ueid_for(device.public_key), vendor_id=VENDOR, class_id=CLASS,
        slots=(SlotClaim("A", "confirmed", 1, b"a" * 32), SlotClaim("B", "empty", None, None)),
        running_slot="A", trial_slot=None, rollback_floor=1, boot_log=(b"m" * 32,),
        integrity=(IntegrityResult("slot-A", RESULT_SUCCESS),
                   IntegrityResult("agent", RESULT_FAIL)),
        issued_at=1_700_000_000)


def test_attestation_round_trip(es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    claims = _claims(es256_signer, b"n" * 16)
    assert verify_token(sign_token(claims, es256_signer), es256_trusted, b"n" * 16) == claims
    assert claims.to_json()["integrity"][1] == {"region": "agent", "result": "MISMATCH"}


def test_attestation_replay_with_old_nonce_is_refused(es256_signer: FileSigner,
                                                      es256_trusted: TrustedKey) -> None:
    token = sign_token(_claims(es256_signer, b"old-nonce"), es256_signer)
    with pytest.raises(errors.AuthenticationError, match="nonce"):
        verify_token(token, es256_trusted, b"new-nonce")


def test_attestation_from_another_device_is_refused(es256_signer: FileSigner,
                                                    eddsa_signer: FileSigner) -> None:
    token = sign_token(_claims(es256_signer, b"n"), es256_signer)
    with pytest.raises(errors.UnknownKeyError):
        verify_token(token, TrustedKey(eddsa_signer.public_key), b"n")
