"""Every malformed or tampered SFUI is refused with a precise error, in bounded time."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cbor2
import pytest

from sfupdate import errors
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey, cbor, suit
from sfupdate.keys.files import FileSigner
from tests.envelopes import auth_for, envelope, manifest_for, manifest_with, read

PAYLOAD = bytes(range(64))


@pytest.fixture
def good(es256_signer: FileSigner) -> bytes:
    return envelope(manifest_for(PAYLOAD), es256_signer, PAYLOAD,
                    members={})


def test_good_envelope_reads(good: bytes, es256_trusted: TrustedKey) -> None:
    assert read(good, [es256_trusted]) == PAYLOAD


def test_truncation_at_every_length(good: bytes, es256_trusted: TrustedKey) -> None:
    for n in range(len(good)):
        with pytest.raises((errors.TruncatedError, errors.PayloadTooShortError)):
            read(good[:n], [es256_trusted])


def test_bit_flip_in_every_byte(good: bytes, es256_trusted: TrustedKey) -> None:
    refused: dict[str, int] = {}
    for i in range(len(good)):
        for bit in (0x01, 0x80):
            bad = bytearray(good)
            bad[i] ^= bit
            with pytest.raises(errors.SfuError) as info:
                read(bytes(bad), [es256_trusted])
            refused[type(info.value).__name__] = refused.get(type(info.value).__name__, 0) + 1
    print(f"{2 * len(good)} flipped copies refused: {refused}")
    assert sum(refused.values()) == 2 * len(good)


def test_trailing_bytes_are_refused(good: bytes, es256_trusted: TrustedKey) -> None:
    with pytest.raises(errors.EncodingError, match="trailing"):
        read(good + b"\x00", [es256_trusted])


def test_oversized_member_length_is_refused_before_allocation(es256_trusted: TrustedKey) -> None:
    # Manifest claims 2**63 bytes: refused from the head alone.
    data = (cbor.encode_head(cbor.MAJOR_TAG, 107) + cbor.encode_head(cbor.MAJOR_MAP, 1)
            + b"\x03" + cbor.encode_head(cbor.MAJOR_BSTR, 2**63))
    with pytest.raises(errors.LimitExceededError):
        EnvelopeReader(io.BytesIO(data))


def test_oversized_count_inside_manifest(es256_signer: FileSigner,
                                         es256_trusted: TrustedKey) -> None:
    manifest = cbor.encode_head(cbor.MAJOR_ARRAY, 2**40) + b"\x00"
    with pytest.raises(errors.TruncatedError):
        read(envelope(manifest, es256_signer, PAYLOAD), [es256_trusted])


def test_indefinite_length_envelope_is_refused() -> None:
    data = cbor.encode_head(cbor.MAJOR_TAG, 107) + b"\xbf\xff"
    with pytest.raises(errors.EncodingError, match="indefinite"):
        EnvelopeReader(io.BytesIO(data))


def test_indefinite_length_inside_manifest(es256_signer: FileSigner,
                                           es256_trusted: TrustedKey) -> None:
    good_manifest = manifest_for(PAYLOAD)
    indefinite = b"\xbf" + good_manifest[1:] + b"\xff"  # same map, indefinite form
    with pytest.raises(errors.EncodingError, match="indefinite"):
        read(envelope(indefinite, es256_signer, PAYLOAD), [es256_trusted])


def test_non_minimal_length_is_refused(es256_signer: FileSigner,
                                       es256_trusted: TrustedKey) -> None:
    good_manifest = manifest_for(PAYLOAD)
    # Re-encode the map head with a one-byte argument where none was needed.
    padded = bytes([0xB8, good_manifest[0] & 0x1F]) + good_manifest[1:]
    with pytest.raises(errors.EncodingError, match="shortest"):
        read(envelope(padded, es256_signer, PAYLOAD), [es256_trusted])


def test_deep_nesting_is_refused_without_recursion(es256_signer: FileSigner,
                                                   es256_trusted: TrustedKey) -> None:
    deep = b"\x81" * 100_000 + b"\x00"
    with pytest.raises(errors.LimitExceededError, match="nesting"):
        read(envelope(deep, es256_signer, PAYLOAD), [es256_trusted])


def test_unknown_envelope_tag_is_refused(good: bytes) -> None:
    bad = cbor.encode_head(cbor.MAJOR_TAG, 108) + good[2:]
    with pytest.raises(errors.UnknownTagError):
        EnvelopeReader(io.BytesIO(bad))


def test_untagged_envelope_is_refused(good: bytes) -> None:
    with pytest.raises(errors.UnknownTagError, match="missing"):
        EnvelopeReader(io.BytesIO(good[2:]))


def test_unknown_inner_tag_is_refused(es256_signer: FileSigner,
                                      es256_trusted: TrustedKey) -> None:
    manifest = manifest_with(PAYLOAD, **{})
    obj = cbor2.loads(manifest)
    obj[suit.MAN_SEQUENCE_NUMBER] = cbor2.CBORTag(1, 5)  # an epoch date where a uint belongs
    with pytest.raises(errors.UnknownTagError):
        read(envelope(cbor.dumps(obj), es256_signer, PAYLOAD), [es256_trusted])


def test_duplicate_map_keys_are_refused(es256_signer: FileSigner,
                                        es256_trusted: TrustedKey) -> None:
    good_manifest = manifest_for(PAYLOAD)
    count = good_manifest[0] & 0x1F
    # Append a second "manifest-sequence-number" at the end: keys repeat.
    dup = bytes([0xA0 | (count + 1)]) + good_manifest[1:] + b"\x02\x05"
    with pytest.raises(errors.EncodingError, match=r"duplicate|order"):
        read(envelope(dup, es256_signer, PAYLOAD), [es256_trusted])


def test_unsorted_map_keys_are_refused(es256_signer: FileSigner,
                                       es256_trusted: TrustedKey) -> None:
    # {2: 1, 1: 1} is valid CBOR but not deterministic.
    with pytest.raises(errors.EncodingError, match="order"):
        read(envelope(b"\xa2\x02\x01\x01\x01", es256_signer, PAYLOAD), [es256_trusted])


def test_unknown_command_is_refused_even_when_signed(es256_signer: FileSigner,
                                                     es256_trusted: TrustedKey) -> None:
    manifest = manifest_with(PAYLOAD, **{str(suit.MAN_VALIDATE): None})
    obj = cbor2.loads(manifest_for(PAYLOAD))
    obj[suit.MAN_VALIDATE] = cbor.dumps([99, 15])
    manifest = cbor.dumps(obj)
    with pytest.raises(errors.UnknownCommandError, match="99"):
        read(envelope(manifest, es256_signer, PAYLOAD), [es256_trusted])


def test_unknown_command_nested_in_try_each(es256_signer: FileSigner,
                                            es256_trusted: TrustedKey) -> None:
    obj = cbor2.loads(manifest_for(PAYLOAD))
    nested = cbor.dumps([suit.DIR_TRY_EACH, [cbor.dumps([77, 15]), None]])
    obj[suit.MAN_VALIDATE] = nested
    with pytest.raises(errors.UnknownCommandError, match="77"):
        read(envelope(cbor.dumps(obj), es256_signer, PAYLOAD), [es256_trusted])


def test_missing_authentication_wrapper(es256_trusted: TrustedKey) -> None:
    with pytest.raises(errors.MissingMemberError, match="unsigned"):
        read(envelope(manifest_for(PAYLOAD), None, PAYLOAD), [es256_trusted])


def test_authentication_wrapper_without_signature(es256_trusted: TrustedKey) -> None:
    from sfupdate.formats.sfui import Digest, manifest_digest
    manifest = manifest_for(PAYLOAD)
    auth = cbor.dumps([Digest(manifest_digest(manifest)).encode()])
    data = envelope(manifest, None, PAYLOAD, members={suit.ENV_AUTHENTICATION: auth})
    with pytest.raises(errors.AuthenticationError, match="no signature"):
        read(data, [es256_trusted])


def test_wrong_key_is_refused(good: bytes, eddsa_signer: FileSigner) -> None:
    with pytest.raises(errors.UnknownKeyError):
        read(good, [TrustedKey(eddsa_signer.public_key)])


def test_other_p256_key_without_kid_fails_signature(good: bytes) -> None:
    from sfupdate import keys
    other = FileSigner(keys.generate_private_key("ES256"))
    obj = cbor.loads(good[2:], "envelope")
    auth = cbor.loads(obj[2], "auth")
    sign1 = cbor.loads(auth[1], "sign1")
    sign1.value[1] = {}  # drop the key ID: every trusted key is tried
    auth[1] = cbor.dumps(sign1)
    data = envelope(obj[3], None, PAYLOAD, members={suit.ENV_AUTHENTICATION: cbor.dumps(auth)})
    with pytest.raises(errors.SignatureError):
        read(data, [TrustedKey(other.public_key)])


class _LyingSigner:
    """Claims an algorithm its key cannot make."""

    def __init__(self, inner: FileSigner, algorithm: int) -> None:
        self._inner, self.algorithm, self.kid = inner, algorithm, inner.kid

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)


@pytest.mark.parametrize("algorithm", [-8, -35, -257, 5])
def test_wrong_algorithm_is_refused(es256_signer: FileSigner, es256_trusted: TrustedKey,
                                    algorithm: int) -> None:
    manifest = manifest_for(PAYLOAD)
    data = envelope(manifest, _LyingSigner(es256_signer, algorithm), PAYLOAD)
    with pytest.raises(errors.UnsupportedAlgorithmError):
        read(data, [es256_trusted])


def test_signature_over_another_manifest(es256_signer: FileSigner,
                                         es256_trusted: TrustedKey) -> None:
    old_auth = auth_for(manifest_for(PAYLOAD, sequence=1), es256_signer)
    new_manifest = manifest_for(PAYLOAD, sequence=9)
    data = envelope(new_manifest, None, PAYLOAD, members={suit.ENV_AUTHENTICATION: old_auth})
    with pytest.raises(errors.ManifestDigestError):
        read(data, [es256_trusted])


def test_payload_longer_than_declared_fails_at_once(es256_signer: FileSigner,
                                                    es256_trusted: TrustedKey) -> None:
    data = envelope(manifest_for(PAYLOAD), es256_signer, PAYLOAD + b"X")
    reader = EnvelopeReader(io.BytesIO(data))
    reader.authenticate([es256_trusted])
    with pytest.raises(errors.PayloadTooLongError):
        next(reader.payload())  # before a single byte is handed out


def test_payload_shorter_than_declared(es256_signer: FileSigner,
                                       es256_trusted: TrustedKey) -> None:
    data = envelope(manifest_for(PAYLOAD), es256_signer, PAYLOAD[:-1])
    with pytest.raises(errors.PayloadTooShortError):
        read(data, [es256_trusted])


def test_unsigned_severable_text_is_refused(es256_signer: FileSigner,
                                            es256_trusted: TrustedKey) -> None:
    text = cbor.dumps({"en": {1: "injected"}})
    data = envelope(manifest_for(PAYLOAD), es256_signer, PAYLOAD,
                    members={suit.ENV_TEXT: text})
    with pytest.raises(errors.SeverableMemberDigestError):
        read(data, [es256_trusted])


def test_tampered_text_is_refused(sign_image, es256_trusted: TrustedKey) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(sign_image(PAYLOAD, description="release notes").read_bytes())
    at = data.index(b"release notes")
    data[at] ^= 0x20
    with pytest.raises(errors.SeverableMemberDigestError):
        read(bytes(data), [es256_trusted])


# --- the command line: one line on stderr, a documented exit code, no traceback -------------


def _sfu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda d: d[: len(d) // 2], errors.TruncatedError.exit_code),
    (lambda d: d[:-10] + bytes([d[-10] ^ 1]) + d[-9:], errors.PayloadDigestError.exit_code),
    (lambda d: b"\x00" + d, errors.UnknownTagError.exit_code),
    (lambda d: d + b"\x00", errors.EncodingError.exit_code),
])
def test_cli_refusal_is_one_line_and_exit_code(tmp_path: Path, good: bytes,
                                               es256_signer: FileSigner,
                                               mutate: Callable[[bytes], bytes],
                                               code: int) -> None:
    from sfupdate import keys
    pub = tmp_path / "k.pub"
    pub.write_bytes(keys.public_pem(es256_signer.public_key))
    bad = tmp_path / "bad.sfui"
    bad.write_bytes(mutate(good))
    result = _sfu("verify", str(bad), "--key", str(pub))
    assert result.returncode == code
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfu: error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_cli_wrong_key_exit_code(tmp_path: Path, good: bytes, eddsa_signer: FileSigner) -> None:
    from sfupdate import keys
    pub = tmp_path / "other.pub"
    pub.write_bytes(keys.public_pem(eddsa_signer.public_key))
    path = tmp_path / "good.sfui"
    path.write_bytes(good)
    result = _sfu("verify", str(path), "--key", str(pub))
    assert result.returncode == errors.AuthenticationError.exit_code
    assert result.stderr.startswith("sfu: error: signed by unknown key")


def test_cli_not_a_key_file(tmp_path: Path, good: bytes) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    path = tmp_path / "good.sfui"
    path.write_bytes(good)
    result = _sfu("verify", str(path), "--key", str(junk))
    assert result.returncode == errors.KeyFileError.exit_code
    assert len(result.stderr.splitlines()) == 1


def test_cli_public_key_of_an_unknown_algorithm(tmp_path: Path, good: bytes,
                                                es256_signer: FileSigner) -> None:
    """A PEM whose algorithm OID the crypto library does not know is a key-file error on one
    line, not the library's UnsupportedAlgorithm."""
    from sfupdate import keys
    der = base64.b64decode("".join(keys.public_pem(es256_signer.public_key).decode()
                                   .splitlines()[1:-1]))
    odd = der.replace(bytes.fromhex("2a8648ce3d0201"), bytes.fromhex("2a8648ce3d0209"))
    assert odd != der
    pem = tmp_path / "odd.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(odd).decode()
                   + "\n-----END PUBLIC KEY-----\n")
    path = tmp_path / "good.sfui"
    path.write_bytes(good)
    result = _sfu("verify", str(path), "--key", str(pem))
    assert result.returncode == errors.KeyFileError.exit_code, result.stderr
    assert len(result.stderr.splitlines()) == 1
