"""The SFUI format: an IETF SUIT envelope (draft-ietf-suit-manifest) signed with COSE_Sign1.

Pure: bytes and streams in, typed objects or precise `sfupdate.errors` out.

The names below are imported from their modules on first use (PEP 562), so that importing a
light submodule, `sfupdate.formats.sfui.cbor` (the IPC framing needs only that), does not import
`cose` and with it the cryptography backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfupdate.formats.sfui.cose import (
        ALGORITHM_NAMES,
        AlgorithmStyle,
        Signer,
        TrustedKey,
        key_id,
    )
    from sfupdate.formats.sfui.model import (
        Command,
        Common,
        Digest,
        ImageInfo,
        LocalizedText,
        Manifest,
        Text,
    )
    from sfupdate.formats.sfui.reader import EnvelopeReader, PayloadRef, Verified, manifest_digest
    from sfupdate.formats.sfui.uuids import check_identity, class_uuid, vendor_uuid
    from sfupdate.formats.sfui.writer import PayloadSource, write_envelope

#: Each exported name and the submodule it lives in.
_EXPORTS = {
    "ALGORITHM_NAMES": "cose", "AlgorithmStyle": "cose", "Signer": "cose",
    "TrustedKey": "cose", "key_id": "cose",
    "Command": "model", "Common": "model", "Digest": "model", "ImageInfo": "model",
    "LocalizedText": "model", "Manifest": "model", "Text": "model",
    "EnvelopeReader": "reader", "PayloadRef": "reader", "Verified": "reader",
    "manifest_digest": "reader",
    "check_identity": "uuids", "class_uuid": "uuids", "vendor_uuid": "uuids",
    "PayloadSource": "writer", "write_envelope": "writer",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ALGORITHM_NAMES",
    "AlgorithmStyle",
    "Command",
    "Common",
    "Digest",
    "EnvelopeReader",
    "ImageInfo",
    "LocalizedText",
    "Manifest",
    "PayloadRef",
    "PayloadSource",
    "Signer",
    "Text",
    "TrustedKey",
    "Verified",
    "check_identity",
    "class_uuid",
    "key_id",
    "manifest_digest",
    "vendor_uuid",
    "write_envelope",
]
