"""A severed member's envelope copy is the member itself (draft-ietf-suit-manifest, severable
fields): once it matches the manifest's digest it is read exactly as if it were inline."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from sfupdate import errors
from sfupdate.formats.sfui import Digest, EnvelopeReader, TrustedKey, cbor, suit
from sfupdate.keys import load_public_key
from sfupdate.keys.files import FileSigner
from tests.envelopes import envelope, manifest_for, read

EXAMPLES = Path(__file__).parent / "data" / "suit-examples"
EXAMPLE_KEY = EXAMPLES / "example-key-public.pem"
# Example 2's severed install: override uri, fetch, image-match (tests/data/suit-examples).
EXAMPLE2_URI = "http://example.com/very/long/path/to/file/file.bin"
PAYLOAD = b"severed" * 40


def _severed(manifest: bytes, key: int) -> tuple[bytes, bytes]:
    """The manifest with member `key` replaced by its SUIT_Digest, and the severed copy (which
    the envelope holds under the same key)."""
    obj = cbor2.loads(manifest)
    member = obj[key]
    obj[key] = Digest(hashlib.sha256(cbor.bstr_wrap(member)).digest()).to_cbor()
    return cbor.dumps(obj), member


def _sfu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_example2_severed_install_gives_the_uri() -> None:
    reader = EnvelopeReader(io.BytesIO((EXAMPLES / "example2.cbor").read_bytes()))
    verified = reader.authenticate([load_public_key(EXAMPLE_KEY)])
    assert verified.info.payload_uri == EXAMPLE2_URI
    assert verified.manifest.install is not None
    assert not isinstance(verified.manifest.install, Digest)
    assert [c.code for c in verified.manifest.install] == [
        suit.DIR_OVERRIDE_PARAMETERS, suit.DIR_FETCH, suit.COND_IMAGE_MATCH]


def test_example2_cli_reports_the_severed_uri() -> None:
    verify = _sfu("verify", str(EXAMPLES / "example2.cbor"), "--key", str(EXAMPLE_KEY))
    assert verify.returncode == 0, verify.stderr
    assert f"(uri {EXAMPLE2_URI})" in verify.stdout
    inspect = _sfu("inspect", "--json", str(EXAMPLES / "example2.cbor"))
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["payload"] == {"integrated": False, "uri": EXAMPLE2_URI}


@pytest.mark.parametrize("key", [suit.MAN_INSTALL, suit.MAN_PAYLOAD_FETCH])
def test_envelope_with_a_severed_sequence_verifies(key: int, es256_signer: FileSigner,
                                                   es256_trusted: TrustedKey) -> None:
    manifest = manifest_for(PAYLOAD)
    if key == suit.MAN_PAYLOAD_FETCH:  # move our install sequence to payload-fetch
        obj = cbor2.loads(manifest)
        obj[suit.MAN_PAYLOAD_FETCH] = obj.pop(suit.MAN_INSTALL)
        manifest = cbor.dumps(obj)
    manifest, member = _severed(manifest, key)
    data = envelope(manifest, es256_signer, PAYLOAD, members={key: member})
    assert read(data, [es256_trusted]) == PAYLOAD


def test_severed_sequence_is_used_only_after_its_digest(es256_signer: FileSigner,
                                                        es256_trusted: TrustedKey) -> None:
    manifest, member = _severed(manifest_for(PAYLOAD), suit.MAN_INSTALL)
    other = cbor.dumps([suit.DIR_OVERRIDE_PARAMETERS, {suit.PARAM_URI: "#other"},
                        suit.DIR_FETCH, suit.REPORT_ALL])
    assert other != member
    data = envelope(manifest, es256_signer, PAYLOAD, members={suit.MAN_INSTALL: other})
    with pytest.raises(errors.SeverableMemberDigestError):
        read(data, [es256_trusted])
    with pytest.raises(errors.SeverableMemberDigestError):
        EnvelopeReader(io.BytesIO(data)).unverified_manifest()


def test_severed_and_absent_install_leaves_no_uri(es256_signer: FileSigner,
                                                  es256_trusted: TrustedKey) -> None:
    manifest, _ = _severed(manifest_for(PAYLOAD), suit.MAN_INSTALL)
    reader = EnvelopeReader(io.BytesIO(envelope(manifest, es256_signer, PAYLOAD)))
    assert reader.authenticate([es256_trusted]).info.payload_uri is None
    with pytest.raises(errors.SchemaError, match="not the one the manifest installs"):
        b"".join(reader.payload())
