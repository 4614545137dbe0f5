"""The trust update's COSE_Sign, read strictly: each malformed or oversized object is refused
with a precise error before any signature counts, and a signature counts only for the key
that made it over these exact bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2
import pytest

from sfupdate.errors import (
    LimitExceededError,
    SchemaError,
    SfuError,
    SignatureError,
    UnknownTagError,
    UnsupportedAlgorithmError,
)
from sfupdate.formats.remote import RemoteCommand, sign_command
from sfupdate.formats.remote.trust import (
    MAX_UPDATE_SIZE,
    TrustUpdate,
    open_trust_update,
    verify_trust_update,
)
from sfupdate.formats.sfui import TrustedKey
from sfupdate.formats.sfui.cose_sign import MAX_SIGNATURES, sign
from tests.thresholds.conftest import TARGET, Signers, role, trust_update


def _body(data: bytes) -> list[Any]:
    item = cbor2.loads(data)
    assert item.tag == 98
    return list(item.value)


def _tagged(body: list[Any], tag: int = 98) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, body), canonical=True)


Edit = Callable[[list[Any]], None]


def _set(index: int, value: Any) -> Edit:
    def edit(body: list[Any]) -> None:
        body[index] = value
    return edit


def _signature_header(protected: dict[int, Any], unprotected: dict[int, Any]) -> Edit:
    def edit(body: list[Any]) -> None:
        signature = list(body[3][0])
        signature[0], signature[1] = cbor2.dumps(protected), unprotected
        body[3] = [signature]
    return edit


MALFORMED: dict[str, tuple[Edit, type[SfuError]]] = {
    "body protected header": (_set(0, cbor2.dumps({1: -9})), SchemaError),
    "body unprotected header": (_set(1, {4: b"x"}), SchemaError),
    "detached payload": (_set(2, None), SchemaError),
    "no signature": (_set(3, []), SchemaError),
    "signature not an array": (_set(3, [b"sig"]), SchemaError),
    "unknown protected label": (_signature_header({1: -9, 33: 1}, {4: b"k"}), SchemaError),
    "unprotected algorithm": (_signature_header({}, {1: -9, 4: b"k"}), SchemaError),
    "no algorithm": (_signature_header({}, {4: b"k"}), UnsupportedAlgorithmError),
    "no key ID": (_signature_header({1: -9}, {}), SchemaError),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_cose_sign_is_refused(name: str, signers: Signers) -> None:
    edit, error = MALFORMED[name]
    body = _body(trust_update(2, [signers.firmware[0]], role("firmware", 1,
                                                             signers.firmware[0])))
    edit(body)
    with pytest.raises(error):
        open_trust_update(_tagged(body))


def test_a_cose_sign1_is_not_a_trust_update(signers: Signers) -> None:
    body = _body(trust_update(2, [signers.firmware[0]], role("firmware", 1,
                                                             signers.firmware[0])))
    with pytest.raises(UnknownTagError):
        open_trust_update(_tagged(body, 18))


def test_a_signed_command_cannot_pass_for_a_trust_update(signers: Signers) -> None:
    command = RemoteCommand(TARGET, 1, "reboot").encode()
    with pytest.raises(SchemaError, match="not an sfupdate trust update"):
        open_trust_update(sign(command, [signers.operators[0]]))
    with pytest.raises(SfuError):
        open_trust_update(sign_command(RemoteCommand(TARGET, 1, "reboot"),
                                       signers.operators[0]))


def test_limits(signers: Signers) -> None:
    with pytest.raises(LimitExceededError):
        open_trust_update(bytes(MAX_UPDATE_SIZE + 1))
    f1 = signers.firmware[0]
    body = _body(trust_update(2, [f1], role("firmware", 1, f1)))
    body[3] = body[3] * (MAX_SIGNATURES + 1)
    with pytest.raises(LimitExceededError):
        open_trust_update(_tagged(body))


def test_a_signature_counts_only_over_the_bytes_it_signed(signers: Signers) -> None:
    f1, f2 = signers.firmware[:2]
    anchors = [TrustedKey(s.public_key) for s in (f1, f2)]
    genuine = trust_update(2, [f1, f2], role("firmware", 2, f1, f2))
    update, keys = verify_trust_update(genuine, anchors)
    assert {k.kid for k in keys} == {f1.kid, f2.kid} and update.version == 2
    body = _body(genuine)
    body[2] = TrustUpdate(TARGET, 9, (role("firmware", 1, f1, f2),)).encode()
    with pytest.raises(SignatureError):
        verify_trust_update(_tagged(body), anchors)
    body = _body(genuine)
    body[3] = [body[3][0], [body[3][1][0], body[3][0][1], body[3][1][2]]]  # f2's sig, f1's kid
    _, keys = verify_trust_update(_tagged(body), anchors)
    assert [k.kid for k in keys] == [f1.kid]


#: id-ecPublicKey (1.2.840.10045.2.1) as it is encoded in a P-256 SubjectPublicKeyInfo.
_EC_OID = bytes.fromhex("2a8648ce3d0201")


def test_a_key_of_an_unknown_algorithm_is_a_schema_error(signers: Signers) -> None:
    """An SPKI whose algorithm OID no library knows is refused as a format error, not an
    exception of the crypto library (found by fuzz/fuzz_remote.py)."""
    f1 = signers.firmware[0]
    payload = TrustUpdate(TARGET, 2, (role("firmware", 1, f1),)).encode()
    assert _EC_OID in payload
    unknown = payload.replace(_EC_OID, bytes.fromhex("2a8648ce3d0209"))  # same length
    with pytest.raises(SchemaError, match="not a DER SubjectPublicKeyInfo"):
        open_trust_update(sign(unknown, [f1]))
