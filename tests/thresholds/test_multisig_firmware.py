"""Firmware signed by several keys (the SUIT authentication wrapper holds one COSE_Sign1 per
key after the digest): with a firmware threshold of 2, two distinct active anchors install,
one is refused, and a key signing twice, a revoked key or a key of no firmware anchor do not
count. Refusals come before the install slot is touched."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from sfupdate.errors import QuarantinedError, ThresholdError, UnknownKeyError
from sfupdate.formats.remote import RemoteCommand, sign_command
from sfupdate.formats.sfui import Digest, EnvelopeReader, TrustedKey, cbor, manifest_digest
from sfupdate.formats.sfui.cose import sign1
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.install import install
from sfupdate.secure.board.records import SlotStatus
from tests.device_world import envelope, firmware, manifest
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

UEID = bytes(33)


@pytest.fixture
def two_of_three(board: Path, signers: Signers) -> Path:
    f1, f2, f3, _ = signers.firmware
    device(board).kernel.update_trust(trust_update(2, [f1], role("firmware", 2, f1, f2, f3)),
                                      UEID, int(time.time()))
    return board


def _install(board: Path, image: bytes) -> None:
    install(device(board), io.BytesIO(image))


def test_firmware_signed_by_two_of_three_installs(two_of_three: Path, signers: Signers,
                                                  tmp_path: Path) -> None:
    f1, _, f3, _ = signers.firmware
    _install(two_of_three, signed_image(tmp_path, 2, [f3, f1]).read_bytes())
    boot = state(two_of_three).boot
    assert boot.trial is not None and boot.slot(boot.trial).status is SlotStatus.TRIAL
    assert boot.trial_image is not None and boot.trial_image.signer == f3.kid


def test_firmware_with_one_signature_is_refused(two_of_three: Path, signers: Signers,
                                                tmp_path: Path) -> None:
    image = signed_image(tmp_path, 2, signers.firmware[:1]).read_bytes()
    with unchanged(two_of_three), pytest.raises(ThresholdError, match="requires 2"):
        _install(two_of_three, image)


def _signed_twice(signer: FileSigner, other: FileSigner) -> bytes:
    """Firmware 2 whose wrapper holds two blocks by `signer` and one by `other`."""
    body = firmware(2)
    manifest_bytes = manifest(2, body)
    digest = Digest(manifest_digest(manifest_bytes)).encode()
    auth = cbor.dumps([digest, sign1(digest, signer), sign1(digest, signer),
                       sign1(digest, other)])
    return envelope(manifest_bytes, body, None, auth=auth)


def test_one_key_signing_twice_counts_once(two_of_three: Path, signers: Signers) -> None:
    image = _signed_twice(signers.firmware[0], signers.outsider)
    assert len(EnvelopeReader(io.BytesIO(image)).signatures()) == 3
    with unchanged(two_of_three), pytest.raises(ThresholdError, match="signed by 1 distinct"):
        _install(two_of_three, image)


def test_a_non_anchor_signature_does_not_count(two_of_three: Path, signers: Signers,
                                               tmp_path: Path) -> None:
    for other in (signers.firmware[3], signers.operators[0]):  # no anchor; another role
        image = signed_image(tmp_path, 2, [signers.firmware[0], other]).read_bytes()
        with unchanged(two_of_three), pytest.raises(ThresholdError):
            _install(two_of_three, image)


def test_a_revoked_anchors_signature_does_not_count(two_of_three: Path, signers: Signers,
                                                    tmp_path: Path) -> None:
    f1, f2, f3, f4 = signers.firmware
    device(two_of_three).kernel.update_trust(
        trust_update(3, [f1, f2], role("firmware", 2, f1, f2, f4)), UEID, int(time.time()))
    image = signed_image(tmp_path, 2, [f1, f3]).read_bytes()
    with unchanged(two_of_three), pytest.raises(ThresholdError):
        _install(two_of_three, image)


def test_no_anchor_at_all_is_an_unknown_key(two_of_three: Path, signers: Signers,
                                            tmp_path: Path) -> None:
    image = signed_image(tmp_path, 2, [signers.outsider, signers.firmware[3]]).read_bytes()
    with unchanged(two_of_three), pytest.raises(UnknownKeyError):
        _install(two_of_three, image)


def test_under_quarantine_the_recovery_anchor_alone_signs(board: Path, signers: Signers,
                                                          tmp_path: Path) -> None:
    """The quarantine's recovery anchor is the one signer that counts, whatever the
    firmware threshold: two firmware signatures are refused, the recovery one installs."""
    f1, f2, f3, recovery = signers.firmware
    o1 = signers.operators[0]
    kernel = device(board).kernel
    kernel.update_trust(trust_update(2, [f1, o1], role("firmware", 2, f1, f2, f3),
                                     role("recovery", 1, recovery)), UEID, int(time.time()))
    command = sign_command(RemoteCommand(TARGET, 1, "quarantine",
                                         {"recovery_key_id": recovery.kid},
                                         issued=int(time.time())), o1)
    kernel.execute(command, UEID, int(time.time()), lambda s: None)
    image = signed_image(tmp_path, 2, [f1, f2]).read_bytes()
    with unchanged(board), pytest.raises(QuarantinedError):
        _install(board, image)
    _install(board, signed_image(tmp_path, 3, [recovery]).read_bytes())
    assert state(board).boot.trial_image is not None


def test_sfu_verify_counts_distinct_signers(signers: Signers, tmp_path: Path) -> None:
    f1, f2, _, _ = signers.firmware
    image = signed_image(tmp_path, 2, [f1, f2])
    with image.open("rb") as stream:
        verified = EnvelopeReader(stream).authenticate(
            [TrustedKey(s.public_key) for s in signers.firmware])
    assert [k.kid for k in verified.signers] == [f1.kid, f2.kid]
