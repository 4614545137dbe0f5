"""Interoperability: the signed example envelopes of draft-ietf-suit-manifest (Appendix B).

The bytes and their provenance are in tests/data/suit-examples/SOURCE.md.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey, cbor, suit
from sfupdate.keys import load_public_key

DATA = Path(__file__).parent / "data" / "suit-examples"
KEY = DATA / "example-key-public.pem"
VENDOR = uuid.UUID("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe")  # UUIDv5(DNS, "arm.com")
CLASS = uuid.UUID("1492af14-2569-5e48-bf42-9b2d51f2ab45")
D0 = bytes.fromhex("00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210")

# example: (sequence number, image digest of component 0, image size of component 0)
EXPECTED = {
    0: (0, D0, 34768),
    1: (1, D0, 34768),
    2: (2, D0, 34768),
    3: (3, None, None),  # A/B: digest and size are chosen inside try-each by slot
    4: (4, D0, 34768),
    5: (5, D0, 34768),
}


@pytest.fixture(scope="module")
def trusted() -> list[TrustedKey]:
    return [load_public_key(KEY)]


@pytest.mark.parametrize("n", sorted(EXPECTED))
def test_signed_example_verifies(n: int, trusted: list[TrustedKey]) -> None:
    reader = EnvelopeReader(io.BytesIO((DATA / f"example{n}.cbor").read_bytes()))
    verified = reader.authenticate(trusted)
    sequence, digest, size = EXPECTED[n]
    info = verified.info
    assert info.sequence_number == sequence
    assert info.vendor_id == VENDOR
    assert info.class_id == CLASS
    assert (info.image_digest.value if info.image_digest else None) == digest
    assert info.image_size == size
    assert verified.payload is None  # the draft's examples fetch their payloads by URI


@pytest.mark.parametrize("n", sorted(EXPECTED))
def test_unsigned_example_is_refused(n: int, trusted: list[TrustedKey]) -> None:
    reader = EnvelopeReader(io.BytesIO((DATA / f"example{n}-unsigned.cbor").read_bytes()))
    with pytest.raises(errors.AuthenticationError, match="no signature"):
        reader.authenticate(trusted)


def test_example2_severable_text_and_install(trusted: list[TrustedKey]) -> None:
    reader = EnvelopeReader(io.BytesIO((DATA / "example2.cbor").read_bytes()))
    verified = reader.authenticate(trusted)
    assert verified.text is not None
    assert list(verified.text.languages) == ["en-US"]
    description = verified.text.description()
    assert description is not None and description.startswith("## Example 2")


def test_example2_with_members_severed_still_verifies(trusted: list[TrustedKey]) -> None:
    envelope = cbor.loads((DATA / "example2.cbor").read_bytes(), "example2").value
    severed = {k: v for k, v in envelope.items() if k not in (suit.ENV_INSTALL, suit.ENV_TEXT)}
    from sfupdate.formats.sfui.writer import envelope_prefix
    reader = EnvelopeReader(io.BytesIO(envelope_prefix(severed, None, 0)))
    assert reader.authenticate(trusted).text is None


def test_example_signed_by_another_key_is_refused(es256_trusted: TrustedKey) -> None:
    reader = EnvelopeReader(io.BytesIO((DATA / "example0.cbor").read_bytes()))
    with pytest.raises(errors.SignatureError):
        reader.authenticate([es256_trusted])  # no key ID in the examples: the key is tried


def test_cli_verify_says_payload_not_checked() -> None:
    result = subprocess.run([sys.executable, "-m", "sfupdate.cli.main", "verify",
                             str(DATA / "example1.cbor"), "--key", str(KEY)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "payload NOT checked" in result.stdout
    assert "http://example.com/file.bin" in result.stdout
