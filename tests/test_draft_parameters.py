"""Parameters of draft-ietf-suit-manifest's CDDL that sfupdate used to refuse, read in the
draft's own examples: a vendor ID given as a Private Enterprise Number
(`suit-parameter-vendor-identifier => RFC4122_UUID / cbor-pen`, `cbor-pen = #6.112(bstr)`),
and `suit-parameter-fetch-arguments => bstr` (25). Also: `sfu inspect` shows text kept inline
in the manifest.

The envelopes are Appendix B's examples 0 and 1 (tests/data/suit-examples) with one parameter
changed, re-signed with the appendix's own key. PEN 32473 is RFC 5612's number for
documentation.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import cbor2
import pytest

from sfupdate import errors, keys
from sfupdate.authoring.repo import Repository
from sfupdate.formats.sfui import AlgorithmStyle, EnvelopeReader, Text, TrustedKey, cbor, suit
from sfupdate.formats.sfui.model import Pen, decode_sequence
from sfupdate.formats.sfui.writer import envelope_prefix
from sfupdate.secure.agent.envelope_checks import check_identity
from tests.envelopes import auth_for, envelope, manifest_for

DATA = Path(__file__).parent / "data" / "suit-examples"
PEN_32473 = cbor2.CBORTag(cbor.TAG_CBOR_PEN, bytes.fromhex("81fd59"))  # relative OID .32473
VENDOR = uuid.UUID("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe")  # the examples' vendor-id
CLASS = uuid.UUID("1492af14-2569-5e48-bf42-9b2d51f2ab45")


@pytest.fixture(scope="module")
def example_key() -> list[TrustedKey]:
    return [keys.load_public_key(DATA / "example-key-public.pem")]


def _example(n: int, edit: Any) -> bytes:
    """Example n with edit(manifest map) applied, re-signed with the appendix key."""
    manifest = cbor2.loads(cbor2.loads((DATA / f"example{n}.cbor").read_bytes()).value[3])
    edit(manifest)
    encoded = cbor.dumps(manifest)
    signer = keys.load_signer(DATA / "example-key-private.pem", AlgorithmStyle.POLYMORPHIC)
    members = {suit.ENV_AUTHENTICATION: auth_for(encoded, signer), suit.ENV_MANIFEST: encoded}
    return envelope_prefix(members, None, 0)


def _edit_shared(key: int, value: Any) -> Any:
    """Set parameter `key` in the shared sequence's override-parameters (example 0)."""
    def edit(manifest: dict[int, Any]) -> None:
        common = cbor2.loads(manifest[suit.MAN_COMMON])
        shared = cbor2.loads(common[suit.COMMON_SHARED_SEQUENCE])
        shared[1][key] = value
        common[suit.COMMON_SHARED_SEQUENCE] = cbor.dumps(shared)
        manifest[suit.MAN_COMMON] = cbor.dumps(common)
    return edit


def _edit_install(key: int, value: Any) -> Any:
    """Set parameter `key` in the install sequence's override-parameters (example 1)."""
    def edit(manifest: dict[int, Any]) -> None:
        install = cbor2.loads(manifest[suit.MAN_INSTALL])
        install[1][key] = value
        manifest[suit.MAN_INSTALL] = cbor.dumps(install)
    return edit


def _authenticate(data: bytes, trusted: list[TrustedKey]) -> Any:
    return EnvelopeReader(io.BytesIO(data)).authenticate(trusted)


def _sfu(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfupdate.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


# --- vendor ID as a CBOR PEN ------------------------------------------------------------------


def test_pen_vendor_id_is_read(example_key: list[TrustedKey]) -> None:
    info = _authenticate(_example(0, _edit_shared(suit.PARAM_VENDOR_ID, PEN_32473)),
                         example_key).info
    assert info.vendor_pen == Pen(32473)
    assert str(info.vendor_pen) == "PEN 32473"
    assert info.vendor_id is None  # no UUID: consumers comparing UUIDs see no match
    assert info.class_id == CLASS and info.checks_vendor


def test_agent_refuses_a_pen_vendor_for_a_uuid_device(example_key: list[TrustedKey]) -> None:
    info = _authenticate(_example(0, _edit_shared(suit.PARAM_VENDOR_ID, PEN_32473)),
                         example_key).info
    with pytest.raises(errors.WrongVendorError):
        check_identity(info, VENDOR, CLASS)


def test_cli_shows_a_pen_vendor(tmp_path: Path) -> None:
    path = tmp_path / "pen.suit"
    path.write_bytes(_example(0, _edit_shared(suit.PARAM_VENDOR_ID, PEN_32473)))
    inspected = _sfu("inspect", "--json", path)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["vendor_id"] == "PEN 32473"
    key = DATA / "example-key-public.pem"
    assert _sfu("verify", path, "--key", key, "--class", str(CLASS)).returncode == 0
    by_name = _sfu("verify", path, "--key", key, "--class", "nRF52")
    assert by_name.returncode == errors.UsageError.exit_code
    assert "give the class as a UUID" in by_name.stderr


def test_repository_refuses_a_pen_vendor(tmp_path: Path,
                                         example_key: list[TrustedKey]) -> None:
    key = tmp_path / "repo.key"
    keys.write_private_key(keys.generate_private_key("ESP256"), key)
    repo = Repository.init(tmp_path / "repo", key, example_key)
    path = tmp_path / "pen.suit"
    path.write_bytes(_example(0, _edit_shared(suit.PARAM_VENDOR_ID, PEN_32473)))
    with pytest.raises(errors.UsageError, match="names no UUID vendor-id"):
        repo.add(path)


@pytest.mark.parametrize(("contents", "message"), [
    (b"", "malformed relative OID"),
    (bytes.fromhex("81fd"), "malformed relative OID"),  # ends inside an arc
    (bytes.fromhex("80fd59"), "leading zero"),
    (bytes.fromhex("9080808000"), "exceeds 32 bits"),
    (bytes.fromhex("81fd5901"), "one relative-OID arc, not 2"),
])
def test_malformed_pen_is_refused(contents: bytes, message: str,
                                  example_key: list[TrustedKey]) -> None:
    pen = cbor2.CBORTag(cbor.TAG_CBOR_PEN, contents)
    with pytest.raises(errors.SchemaError, match=message):
        _authenticate(_example(0, _edit_shared(suit.PARAM_VENDOR_ID, pen)), example_key)


def test_largest_pen_is_read() -> None:
    assert Pen.from_cbor(cbor2.CBORTag(112, bytes.fromhex("8fffffff7f")), "pen") == Pen(2**32 - 1)


@pytest.mark.parametrize("edit", [
    _edit_shared(suit.PARAM_CLASS_ID, PEN_32473),  # class-id is RFC4122_UUID only
    _edit_shared(-300, PEN_32473),  # custom parameters are int / bool / tstr / bstr
    _edit_shared(suit.PARAM_VENDOR_ID, cbor2.CBORTag(111, bytes.fromhex("81fd59"))),  # an OID
])
def test_tag_112_is_refused_where_the_draft_does_not_put_it(
        edit: Any, example_key: list[TrustedKey]) -> None:
    with pytest.raises((errors.SchemaError, errors.UnknownTagError)):
        _authenticate(_example(0, edit), example_key)


def test_tag_112_is_refused_outside_command_sequences(example_key: list[TrustedKey]) -> None:
    def edit(manifest: dict[int, Any]) -> None:
        manifest[suit.MAN_REFERENCE_URI] = PEN_32473
    with pytest.raises(errors.UnknownTagError, match="tag 112"):
        _authenticate(_example(0, edit), example_key)


@pytest.mark.parametrize("sequence", [
    "8214a101d870580381fd59",  # the PEN's byte string with a non-shortest length head
    "8214a101d9007043" + "81fd59",  # the tag number itself in a non-shortest head
])
def test_non_deterministic_pen_is_refused(sequence: str) -> None:
    with pytest.raises(errors.EncodingError, match="not shortest"):
        decode_sequence(bytes.fromhex(sequence), "shared sequence")


def test_deterministic_pen_sequence_reads() -> None:
    commands = decode_sequence(bytes.fromhex("8214a101d8704381fd59"), "shared sequence")
    assert commands[0].argument == {suit.PARAM_VENDOR_ID: PEN_32473}


# --- fetch arguments --------------------------------------------------------------------------


def test_fetch_arguments_are_read(example_key: list[TrustedKey]) -> None:
    data = _example(1, _edit_install(suit.PARAM_FETCH_ARGUMENTS, b"\x01\x02"))
    assert _authenticate(data, example_key).info.payload_uri == "http://example.com/file.bin"


def test_fetch_arguments_must_be_a_byte_string(example_key: list[TrustedKey]) -> None:
    data = _example(1, _edit_install(suit.PARAM_FETCH_ARGUMENTS, "range=0-"))
    with pytest.raises(errors.SchemaError,
                       match=r"parameter 25 has the wrong type or value \(must be a byte string"):
        _authenticate(data, example_key)


# --- inspect reads text kept inline in the manifest --------------------------------------------


def test_inspect_shows_inline_text(tmp_path: Path, es256_signer: keys.FileSigner) -> None:
    payload = b"inline text" * 10
    text = Text.decode(cbor.dumps({"en": {suit.TEXT_MANIFEST_DESCRIPTION: "kept inline"}}))
    obj = cbor2.loads(manifest_for(payload))
    obj[suit.MAN_TEXT] = text.encode()  # inline, not severed: no envelope member 23
    manifest = cbor.dumps(obj)
    path = tmp_path / "inline.sfui"
    path.write_bytes(envelope(manifest, es256_signer, payload))
    inspected = _sfu("inspect", "--json", path)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["description"] == "kept inline"
