"""Sign and verify round trips, and the refusals a verifier must make."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey
from sfupdate.keys.files import FileSigner
from tests.conftest import SignImage
from tests.world import CLASS, VENDOR


def read_all(path: Path, trusted: list[TrustedKey]) -> bytes:
    with open(path, "rb") as f:
        reader = EnvelopeReader(f)
        reader.authenticate(trusted)
        return b"".join(reader.payload(chunk_size=4096))


@pytest.mark.parametrize("signer_name", ["es256_signer", "eddsa_signer"])
def test_round_trip(sign_image: SignImage, signer_name: str,
                    request: pytest.FixtureRequest) -> None:
    signer: FileSigner = request.getfixturevalue(signer_name)
    payload = bytes(range(256)) * 1000
    path = sign_image(payload, sequence=7, signer=signer, version_text="7.0",
                      description="seven")
    with open(path, "rb") as f:
        reader = EnvelopeReader(f)
        verified = reader.authenticate([TrustedKey(signer.public_key)])
        assert b"".join(reader.payload()) == payload
    info = verified.info
    assert info.sequence_number == 7
    assert (info.vendor_id, info.class_id) == (VENDOR, CLASS)
    assert info.image_size == len(payload)
    assert info.image_digest is not None
    assert info.image_digest.value == hashlib.sha256(payload).digest()
    assert verified.text is not None and verified.text.component_version() == "7.0"
    assert verified.signer.kid == signer.kid


def test_empty_payload(sign_image: SignImage, es256_trusted: TrustedKey) -> None:
    assert read_all(sign_image(b""), [es256_trusted]) == b""


def test_wrong_key_is_refused(sign_image: SignImage, eddsa_signer: FileSigner) -> None:
    path = sign_image()
    with pytest.raises(errors.UnknownKeyError):
        read_all(path, [TrustedKey(eddsa_signer.public_key)])


def test_payload_tamper_is_refused(sign_image: SignImage, es256_trusted: TrustedKey) -> None:
    path = sign_image(b"A" * 10000)
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(errors.PayloadDigestError):
        read_all(path, [es256_trusted])


def test_no_payload_byte_before_authentication(sign_image: SignImage) -> None:
    """Asking for the payload first is a programming mistake (RuntimeError), not a refusal
    of the file."""
    with open(sign_image(), "rb") as f:
        reader = EnvelopeReader(f)
        with pytest.raises(RuntimeError, match="authenticate"):
            next(reader.payload())


def test_authenticate_runs_once(sign_image: SignImage, es256_trusted: TrustedKey) -> None:
    with open(sign_image(), "rb") as f:
        reader = EnvelopeReader(f)
        reader.authenticate([es256_trusted])
        with pytest.raises(RuntimeError, match="once"):
            reader.authenticate([es256_trusted])


def test_firmware_that_changes_while_signing_is_refused(tmp_path: Path,
                                                        es256_signer: FileSigner) -> None:
    # A FIFO reports size 0 and then delivers bytes: the same as a file growing mid-sign.
    import os
    import threading

    from sfupdate.authoring.author import ImageSpec, sign_firmware

    fifo = tmp_path / "growing.bin"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(b"more bytes than the size said")

    feeder = threading.Thread(target=feed)
    feeder.start()
    out = tmp_path / "out.sfui"
    with pytest.raises(errors.UsageError, match="grew"):
        sign_firmware(fifo, out, es256_signer, ImageSpec(1, VENDOR, CLASS))
    feeder.join(5)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["growing.bin"]  # no temp file left
