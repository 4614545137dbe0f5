"""Sign a firmware file into an SFUI whose payload is encoded for transport: zstd-compressed
(`sfu sign --compress zstd`) or a delta patch against the image of an older SFUI (`sfu sign
--delta-from OLD.sfui`). The manifest's image-digest and image-size stay those of the image as
installed; the encoding is a signed parameter (formats/sfui/encoding.py).

The encoded payload is written to a temporary file first (its length is in the envelope
header), then the header and the payload are written out atomically. Encrypted as well (`sfu
sign --compress zstd --encrypt-for ...`), it is the encoded payload that is encrypted: a
device decrypts, then decodes, then hashes the image (formats/sfui/reader.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Final

import zstandard

from sfupdate.authoring.author.atomic import atomic_output
from sfupdate.authoring.author.delta import BALANCED, Profile, make_patch
from sfupdate.authoring.author.encrypt import PayloadEncryption
from sfupdate.authoring.author.sign import (
    CHUNK,
    ImageSpec,
    SignedImage,
    _check_signers,
    envelope_header,
)
from sfupdate.errors import SfuError, UsageError
from sfupdate.formats.sfui import EnvelopeReader, ImageInfo
from sfupdate.formats.sfui.cose import Signer
from sfupdate.formats.sfui.decode import decoded
from sfupdate.formats.sfui.encoding import (
    Compressed,
    Delta,
    PayloadEncoding,
    encoded_bound,
    payload_encoding,
)
from sfupdate.progress import Progress, no_progress

ZSTD_LEVEL: Final = 19
ZSTD_WINDOW_LOG: Final = 23  # 8 MiB: encoding.ZSTD_MAX_WINDOW, what a device allocates
#: Reads the firmware, writes the encoded payload; returns the image digest and the encoding.
_Encoder = Callable[[BinaryIO, BinaryIO, int], tuple[bytes, PayloadEncoding]]


def sign_compressed(firmware: Path, output: Path, signer: Signer, spec: ImageSpec,
                    progress: Progress = no_progress, cosigners: Sequence[Signer] = (),
                    encryption: PayloadEncryption | None = None) -> SignedImage:
    """Sign `firmware` with its payload zstd-compressed, streaming (flat memory); `cosigners`
    and `encryption` as in sign_firmware."""
    def encode(src: BinaryIO, dst: BinaryIO, size: int) -> tuple[bytes, PayloadEncoding]:
        params = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, source_size=size, window_log=ZSTD_WINDOW_LOG, write_content_size=True,
            threads=-1)
        hasher = hashlib.sha256()
        done = 0
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(
                dst, size=size, closefd=False) as writer:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                writer.write(chunk)
                done += len(chunk)
                progress(done, size)
        if done != size:
            raise UsageError("firmware file changed size while it was being signed")
        return hasher.digest(), Compressed()

    return _sign_encoded(firmware, output, (signer, *cosigners), spec, encode, encryption)


def sign_delta(firmware: Path, base: Path, output: Path, signer: Signer, spec: ImageSpec,
               progress: Progress = no_progress, cosigners: Sequence[Signer] = (),
               encryption: PayloadEncryption | None = None,
               profile: Profile = BALANCED) -> SignedImage:
    """Sign `firmware` with its payload an SFD2 patch against the image of the SFUI `base`
    (both images are held in memory, as the matching needs), made as `profile` says;
    `cosigners` and `encryption` as in sign_firmware."""
    old = read_base_image(base)

    def encode(src: BinaryIO, dst: BinaryIO, size: int) -> tuple[bytes, PayloadEncoding]:
        new = src.read()
        if len(new) != size:
            raise UsageError("firmware file changed size while it was being signed")
        progress(0, size)
        dst.write(make_patch(old, new, profile))
        progress(size, size)
        return hashlib.sha256(new).digest(), Delta(hashlib.sha256(old).digest(), len(old))

    return _sign_encoded(firmware, output, (signer, *cosigners), spec, encode, encryption)


def read_base_image(path: Path) -> bytes:
    """The image an SFUI carries (plain or compressed), checked against its manifest's digest
    (the signature is not checked: this is the author's own file)."""
    try:
        with open(path, "rb") as f:
            reader = EnvelopeReader(f)
            manifest = reader.unverified_manifest()
            info = ImageInfo.from_manifest(manifest)
            encoding = payload_encoding(manifest)
            ref = reader.payload_ref
            if ref is None or info.image_digest is None or info.image_size is None:
                raise UsageError(f"{path} has no integrated payload to make a delta from")
            if isinstance(encoding, Delta):
                raise UsageError(f"{path} is itself a delta: make the delta from a full (or "
                                 "compressed) SFUI of that version")
            if info.encryption_info is not None:
                raise UsageError(f"{path} is encrypted: make the delta from an unencrypted "
                                 "SFUI of that version")
            raw = f.read(ref.length)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) != ref.length:
        raise UsageError(f"{path} is truncated")
    try:
        image = raw if encoding is None else b"".join(
            decoded(encoding, iter([raw]), info.image_size, None, CHUNK))
    except SfuError as exc:
        raise UsageError(f"{path}: its payload does not decode: {exc}") from None
    if hashlib.sha256(image).digest() != info.image_digest.value:
        raise UsageError(f"{path}: its payload does not match its manifest's image-digest")
    return image


def _sign_encoded(firmware: Path, output: Path, signers: Sequence[Signer], spec: ImageSpec,
                  encode: _Encoder, encryption: PayloadEncryption | None) -> SignedImage:
    _check_signers(signers)
    payload = output.with_name(f".{output.name}.payload{os.getpid()}")
    try:
        with atomic_output(output, firmware) as tmp, open(firmware, "rb") as src, \
                open(payload, "w+b") as encoded:
            size = os.fstat(src.fileno()).st_size
            digest, encoding = encode(src, encoded, size)
            length = encoded.tell()
            if length > encoded_bound(size):
                raise UsageError(f"the {encoding.describe()} payload ({length} bytes) is larger "
                                 f"than a device accepts for a {size}-byte image; sign it "
                                 "without encoding")
            overhead = encryption.overhead if encryption is not None else 0
            manifest, header = envelope_header(spec, digest, size, signers, encryption,
                                               encoding, length + overhead)
            encoded.seek(0)
            with open(tmp, "wb") as dst:
                dst.write(header)
                _copy_payload(encoded, dst, encryption)
                dst.flush()
                os.fsync(dst.fileno())
    finally:
        payload.unlink(missing_ok=True)
    return SignedImage(output, manifest, digest, size, len(header) + length + overhead)


def _copy_payload(src: BinaryIO, dst: BinaryIO, encryption: PayloadEncryption | None) -> None:
    """The encoded payload, encrypted on the way if asked (its tag, if any, after it)."""
    if encryption is None:
        shutil.copyfileobj(src, dst, CHUNK)
        return
    encryptor = encryption.encryptor()
    while chunk := src.read(CHUNK):
        dst.write(encryptor.update(chunk))
    dst.write(encryptor.finish())


