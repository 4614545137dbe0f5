"""The SFUI format: an IETF SUIT envelope (draft-ietf-suit-manifest) signed with COSE_Sign1.

Pure: bytes and streams in, typed objects or precise `sfupdate.errors` out.
"""

from sfupdate.sfui.cose import ALGORITHM_NAMES, AlgorithmStyle, Signer, TrustedKey, key_id
from sfupdate.sfui.model import (
    Command,
    Common,
    Digest,
    ImageInfo,
    LocalizedText,
    Manifest,
    Text,
)
from sfupdate.sfui.reader import EnvelopeReader, PayloadRef, Verified, manifest_digest
from sfupdate.sfui.uuids import class_uuid, vendor_uuid
from sfupdate.sfui.writer import PayloadSource, write_envelope

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
    "class_uuid",
    "key_id",
    "manifest_digest",
    "vendor_uuid",
    "write_envelope",
]
