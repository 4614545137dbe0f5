"""The integrated payload is the envelope member whose key equals the URI the manifest fetches.

draft-ietf-suit-manifest's integrated-payload template installs with
`override-parameters {uri: "#name"}, fetch, image-match` and keys the payload in the envelope
with that same text, "#name" (the public vectors use "#tc", "#dependent.suit",
"#dependency-manifest").
"""

from __future__ import annotations

import cbor2
import pytest

from sfupdate import errors
from sfupdate.authoring.author.sign import PAYLOAD_URI
from sfupdate.formats.sfui import ImageInfo, Manifest, PayloadRef, TrustedKey, cbor, suit
from sfupdate.formats.sfui.writer import envelope_prefix
from sfupdate.keys.files import FileSigner
from sfupdate.secure.agent.envelope_checks import check_payload
from tests.conftest import SignImage
from tests.envelopes import auth_for, manifest_for, read

PAYLOAD = b"Hello, Secure World!"  # the TEEP integrated-payload example's "#tc" payload
# The draft's integrated-payload install sequence, for a payload keyed "#tc".
INSTALL_TC = cbor.dumps([suit.DIR_OVERRIDE_PARAMETERS, {suit.PARAM_URI: "#tc"},
                         suit.DIR_FETCH, suit.REPORT_ALL, suit.COND_IMAGE_MATCH, suit.REPORT_ALL])


def _envelope(manifest: bytes, signer: FileSigner, key: str, payload: bytes) -> bytes:
    members = {suit.ENV_AUTHENTICATION: auth_for(manifest, signer), suit.ENV_MANIFEST: manifest}
    return envelope_prefix(members, key, len(payload)) + payload


def test_signer_keys_the_payload_by_its_uri(sign_image: SignImage) -> None:
    envelope = cbor2.loads(sign_image(PAYLOAD).read_bytes()).value
    payload_keys = [k for k in envelope if isinstance(k, str)]
    assert payload_keys == [PAYLOAD_URI] == ["#firmware"]
    assert envelope[PAYLOAD_URI] == PAYLOAD
    info = ImageInfo.from_manifest(Manifest.decode(envelope[suit.ENV_MANIFEST]))
    assert info.payload_uri == PAYLOAD_URI


def test_payload_keyed_by_the_draft_convention_reads(es256_signer: FileSigner,
                                                      es256_trusted: TrustedKey) -> None:
    obj = cbor2.loads(manifest_for(PAYLOAD))
    obj[suit.MAN_INSTALL] = INSTALL_TC
    manifest = cbor.dumps(obj)
    assert read(_envelope(manifest, es256_signer, "#tc", PAYLOAD), [es256_trusted]) == PAYLOAD


def test_payload_key_without_the_fragment_mark_is_refused(es256_signer: FileSigner,
                                                          es256_trusted: TrustedKey) -> None:
    """sfupdate's old form (key "firmware" for uri "#firmware") is not the draft's: the key
    must equal the URI, so the manifest installs no member of this envelope."""
    data = _envelope(manifest_for(PAYLOAD), es256_signer, "firmware", PAYLOAD)
    with pytest.raises(errors.SchemaError,
                       match=r"integrated payload 'firmware' is not the one the manifest "
                             r"installs \('#firmware'\)"):
        read(data, [es256_trusted])


def test_agent_policy_matches_the_key_to_the_uri() -> None:
    info = ImageInfo.from_manifest(Manifest.decode(manifest_for(PAYLOAD)))
    check_payload(info, PayloadRef("#firmware", len(PAYLOAD)))
    with pytest.raises(errors.SchemaError):
        check_payload(info, PayloadRef("firmware", len(PAYLOAD)))
