"""How an integrated payload is encoded for transport, as the signed manifest says it.

The manifest's image-digest and image-size are always those of the image as installed; the
payload in the envelope may be that image itself (no encoding), the image compressed with
zstd, or a delta patch against a base image named by its digest and size. Both encodings are
private-use SUIT parameters (docs/suit-notes.md, "Compressed and delta payloads"):

* compression-info (-260): `bstr .cbor {1: 3}`, the SUIT_Compression_Info shape of earlier
  draft-ietf-suit-manifest revisions (suit-compression-algorithm 1, zstd 3);
* delta-info (-261): `bstr .cbor {1: 1, 2: bstr .cbor SUIT_Digest, 3: uint}`: the patch
  format (2, sfupdate's SFD2, docs/design.md), the base image's digest and its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sfupdate.errors import SchemaError, UnsupportedError
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.model import Digest, Manifest, _component_parameters

PARAM_COMPRESSION_INFO: Final = -260
PARAM_DELTA_INFO: Final = -261
COMPRESSION_ALGORITHM: Final = 1  # suit-compression-algorithm
COMPRESSION_ZSTD: Final = 3  # SUIT_Compression_Algorithm_zstd of the earlier drafts
DELTA_FORMAT: Final = 1
DELTA_BASE_DIGEST: Final = 2
DELTA_BASE_SIZE: Final = 3
DELTA_SFD2: Final = 2
#: The zstd window a device allocates at most (a frame asking for more is refused): memory
#: stays flat whatever the image size.
ZSTD_MAX_WINDOW: Final = 8 << 20
#: An encoded payload may exceed the image it encodes (incompressible data) by this much.
OVERHEAD_DIVISOR: Final = 64
OVERHEAD_BYTES: Final = 1 << 16


@dataclass(frozen=True)
class Compressed:
    """The payload is the image, zstd-compressed (one frame)."""

    algorithm: int = COMPRESSION_ZSTD

    def parameter(self) -> tuple[int, bytes]:
        return PARAM_COMPRESSION_INFO, cbor.dumps({COMPRESSION_ALGORITHM: self.algorithm})

    def describe(self) -> str:
        return "zstd"


@dataclass(frozen=True)
class Delta:
    """The payload is an SFD2 patch that rebuilds the image from the base image."""

    base_digest: bytes
    base_size: int
    format: int = DELTA_SFD2

    def parameter(self) -> tuple[int, bytes]:
        return PARAM_DELTA_INFO, cbor.dumps({DELTA_FORMAT: self.format,
                                             DELTA_BASE_DIGEST: Digest(self.base_digest).encode(),
                                             DELTA_BASE_SIZE: self.base_size})

    def describe(self) -> str:
        return f"delta from sha256:{self.base_digest.hex()}"


PayloadEncoding = Compressed | Delta


def payload_encoding(manifest: Manifest) -> PayloadEncoding | None:
    """The encoding component 0's parameters declare, or None for a plain payload."""
    params = _component_parameters(manifest)[0][0]
    compression = params.get(PARAM_COMPRESSION_INFO)
    delta = params.get(PARAM_DELTA_INFO)
    if compression is not None and delta is not None:
        raise UnsupportedError("a payload is either compressed or a delta, not both")
    if compression is not None:
        return _compression(compression)
    if delta is not None:
        return _delta(delta)
    return None


def encoded_bound(image_size: int) -> int:
    """The most bytes an encoded payload of an `image_size`-byte image may have."""
    return image_size + image_size // OVERHEAD_DIVISOR + OVERHEAD_BYTES


def _info_map(value: Any, what: str) -> dict[Any, Any]:
    if not isinstance(value, bytes):
        raise SchemaError(f"{what} is not a byte string")
    info = cbor.loads(value, what)
    if not isinstance(info, dict):
        raise SchemaError(f"{what} is not a map")
    return info


def _compression(value: Any) -> Compressed:
    info = _info_map(value, "compression-info")
    if set(info) != {COMPRESSION_ALGORITHM}:
        raise SchemaError("compression-info must hold exactly its algorithm (key 1)")
    algorithm = info[COMPRESSION_ALGORITHM]
    if algorithm != COMPRESSION_ZSTD:
        raise UnsupportedError(f"compression algorithm {algorithm!r}; only zstd (3)")
    return Compressed(algorithm)


def _delta(value: Any) -> Delta:
    info = _info_map(value, "delta-info")
    if set(info) != {DELTA_FORMAT, DELTA_BASE_DIGEST, DELTA_BASE_SIZE}:
        raise SchemaError("delta-info must hold its format, base digest and base size "
                          "(keys 1, 2, 3)")
    if info[DELTA_FORMAT] != DELTA_SFD2:
        raise UnsupportedError(f"delta format {info[DELTA_FORMAT]!r}; only SFD2 (2)")
    digest = info[DELTA_BASE_DIGEST]
    if not isinstance(digest, bytes):
        raise SchemaError("delta-info base digest is not a byte string")
    size = info[DELTA_BASE_SIZE]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 63:
        raise SchemaError("delta-info base size is not an unsigned integer")
    return Delta(Digest.decode(digest, "delta-info base digest").value, size)


__all__ = ["Compressed", "Delta", "PayloadEncoding", "encoded_bound", "payload_encoding"]
