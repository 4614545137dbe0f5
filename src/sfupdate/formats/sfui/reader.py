"""Streaming SFUI reader: authenticate first, then stream the payload with flat memory.

`EnvelopeReader` holds all verification state for one envelope; its methods are the only
legal transitions (python-tuf's TrustedMetadataSet is the model):

    reader = EnvelopeReader(stream)        # reads the small members, stops before the payload
    verified = reader.authenticate(keys)   # signature, manifest digest, severable members
    for chunk in reader.payload():         # counts against image-size, digest checked at end
        ...

Deterministic CBOR puts integer keys (authentication wrapper, manifest, text) before text
keys (integrated payloads), so a conforming envelope always has everything needed to
authenticate before the first payload byte. An envelope that puts a payload first is
refused rather than buffered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final

from sfupdate.errors import (
    AuthenticationError,
    EncodingError,
    LimitExceededError,
    ManifestDigestError,
    MissingMemberError,
    PayloadDigestError,
    PayloadTooLongError,
    PayloadTooShortError,
    SchemaError,
    SeverableMemberDigestError,
    SfuError,
    UnknownTagError,
    UnsupportedError,
)
from sfupdate.formats.delta.patch import BaseImage
from sfupdate.formats.sfui import cbor, suit
from sfupdate.formats.sfui.cose import Sign1, TrustedKey
from sfupdate.formats.sfui.decode import decoded
from sfupdate.formats.sfui.encoding import PayloadEncoding, encoded_bound, payload_encoding
from sfupdate.formats.sfui.model import Digest, ImageInfo, Manifest, Text, decode_sequence

MAX_MEMBERS: Final = 16
MAX_AUTH_SIZE: Final = 64 * 1024
MAX_MANIFEST_SIZE: Final = 256 * 1024
MAX_SEVERABLE_SIZE: Final = 1024 * 1024
MAX_PAYLOAD_KEY_SIZE: Final = 256
MAX_AUTH_BLOCKS: Final = 8
CHUNK_SIZE: Final = 1024 * 1024


def manifest_digest(manifest_bytes: bytes) -> bytes:
    """SHA-256 over the bstr-wrapped manifest, as the authentication wrapper's digest is."""
    return hashlib.sha256(cbor.bstr_wrap(manifest_bytes)).digest()


@dataclass(frozen=True)
class SignatureInfo:
    algorithm: int
    kid: bytes | None


@dataclass(frozen=True)
class PayloadRef:
    """Where the integrated payload is: its key (the URI that references it, e.g. "#firmware")
    and length (bytes not yet read)."""

    key: str
    length: int


@dataclass(frozen=True)
class Verified:
    """The outcome of authentication: everything here is covered by a trusted signature."""

    manifest: Manifest
    info: ImageInfo
    text: Text | None
    signer: TrustedKey
    payload: PayloadRef | None
    encoding: PayloadEncoding | None = None  # how the payload is encoded for transport


class _State(Enum):
    PARSED = 1
    AUTHENTICATED = 2
    STREAMING = 3
    DONE = 4


class EnvelopeReader:
    """Reads one SFUI from a binary stream (file, socket adapter...)."""

    def __init__(self, stream: cbor.Readable) -> None:
        self._stream = stream
        self._state = _State.PARSED
        self._members: dict[int, bytes] = {}
        self._remaining_items = 0
        self.payload_ref: PayloadRef | None = None
        self._verified: Verified | None = None
        self._read_members()

    # --- parsing (before any trust) ---------------------------------------------------------

    def _read_members(self) -> None:
        major, value, _ = cbor.read_head(self._stream, "envelope tag")
        if major != cbor.MAJOR_TAG:
            raise UnknownTagError("not an SFUI: the SUIT envelope tag (107) is missing")
        if value != cbor.TAG_SUIT_ENVELOPE:
            raise UnknownTagError(f"not an SFUI: CBOR tag {value}, expected SUIT envelope (107)")
        major, count, _ = cbor.read_head(self._stream, "envelope map")
        if major != cbor.MAJOR_MAP:
            raise SchemaError("SUIT envelope is not a map")
        if count > MAX_MEMBERS:
            raise LimitExceededError(f"envelope has {count} members (at most {MAX_MEMBERS})")
        previous = b""
        self._remaining_items = count
        while self._remaining_items:
            major, key_value, head = cbor.read_head(self._stream, "envelope member key")
            if major == cbor.MAJOR_TSTR:
                if key_value > MAX_PAYLOAD_KEY_SIZE:
                    raise LimitExceededError("integrated payload key is too long")
                raw = cbor.read_exact(self._stream, key_value, "payload key")
                encoded_key = head + raw
            elif major == cbor.MAJOR_UINT:
                encoded_key = head
            else:
                raise SchemaError("envelope member key is neither an integer nor a text string")
            if encoded_key <= previous:
                raise EncodingError("envelope keys are duplicated or not in deterministic order")
            previous = encoded_key
            self._remaining_items -= 1
            vmajor, length, _ = cbor.read_head(self._stream, "envelope member")
            if vmajor != cbor.MAJOR_BSTR:
                raise SchemaError("an envelope member is not a byte string")
            if major == cbor.MAJOR_TSTR:
                try:
                    key = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise EncodingError("payload key is not valid UTF-8") from None
                self.payload_ref = PayloadRef(key, length)
                return  # the payload itself is streamed later, after authentication
            if key_value not in suit.ENVELOPE_MEMBERS:
                raise SchemaError(f"unknown envelope member {key_value}")
            limit = {suit.ENV_AUTHENTICATION: MAX_AUTH_SIZE,
                     suit.ENV_MANIFEST: MAX_MANIFEST_SIZE}.get(key_value, MAX_SEVERABLE_SIZE)
            if length > limit:
                raise LimitExceededError(f"envelope member {key_value} is {length} bytes "
                                         f"(at most {limit})")
            self._members[key_value] = cbor.read_exact(self._stream, length,
                                                       f"envelope member {key_value}")
        self._finish_envelope()

    def _finish_envelope(self) -> None:
        if self._stream.read(1):
            raise EncodingError("trailing bytes after the SUIT envelope")

    @property
    def manifest_bytes(self) -> bytes:
        if suit.ENV_MANIFEST not in self._members:
            raise MissingMemberError("envelope has no manifest")
        return self._members[suit.ENV_MANIFEST]

    def unverified_manifest(self) -> Manifest:
        """Decode the manifest WITHOUT checking any signature (for inspection only). Severed
        members the envelope carries are read in, as in authenticate(), once they match the
        manifest's digests."""
        return self._with_severed(Manifest.decode(self.manifest_bytes))

    def unverified_text(self) -> Text | None:
        """The manifest's text, inline or severed, WITHOUT checking any signature."""
        text = self.unverified_manifest().text
        return text if isinstance(text, Text) else None

    def signatures(self) -> list[SignatureInfo]:
        """The authentication blocks' algorithms and key IDs (unverified)."""
        _, blocks = self._auth_wrapper()
        return [SignatureInfo(b.algorithm, b.kid) for b in blocks]

    def _auth_wrapper(self) -> tuple[bytes, list[Sign1]]:
        raw = self._members.get(suit.ENV_AUTHENTICATION)
        if raw is None:
            raise MissingMemberError("envelope has no authentication wrapper: it is unsigned")
        wrapper = cbor.loads(raw, "authentication wrapper")
        if not (isinstance(wrapper, list) and wrapper and all(isinstance(x, bytes)
                                                              for x in wrapper)):
            raise SchemaError("authentication wrapper is not a list of byte strings")
        if len(wrapper) - 1 > MAX_AUTH_BLOCKS:
            raise LimitExceededError("too many authentication blocks")
        return wrapper[0], [Sign1.decode(block) for block in wrapper[1:]]

    # --- authentication ---------------------------------------------------------------------

    def authenticate(self, trusted: Sequence[TrustedKey]) -> Verified:
        """Check the signature over the manifest digest, then the manifest itself."""
        if self._state is not _State.PARSED:
            raise RuntimeError("authenticate() may be called once, before the payload")
        digest_bytes, blocks = self._auth_wrapper()
        if not blocks:
            raise AuthenticationError("envelope carries no signature (no authentication block)")
        digest = Digest.decode(digest_bytes, "manifest digest")
        signer: TrustedKey | None = None
        first_error: SfuError | None = None
        for block in blocks:
            try:
                signer = block.verify(digest_bytes, trusted)
                break
            except SfuError as exc:
                first_error = first_error or exc
        if signer is None:
            assert first_error is not None
            raise first_error
        if manifest_digest(self.manifest_bytes) != digest.value:
            raise ManifestDigestError("manifest does not match the signed digest")
        manifest = self._with_severed(Manifest.decode(self.manifest_bytes))
        text = manifest.text if isinstance(manifest.text, Text) else None
        info = ImageInfo.from_manifest(manifest)
        if len(manifest.common.components) != 1 and self.payload_ref is not None:
            raise UnsupportedError("integrated payloads are supported for one component only")
        self._verified = Verified(manifest, info, text, signer, self.payload_ref,
                                  payload_encoding(manifest))
        self._state = _State.AUTHENTICATED
        return self._verified

    def _with_severed(self, manifest: Manifest) -> Manifest:
        """The manifest with each severed member replaced by the envelope's copy of it.

        A severed member's envelope copy *is* the member (draft-ietf-suit-manifest, severable
        fields): once it matches the digest the manifest holds for it, it is used exactly as
        if it were inline. A copy the manifest does not cover by a digest is refused."""
        install = self._severed_copy(suit.ENV_INSTALL, manifest.install)
        fetch = self._severed_copy(suit.ENV_PAYLOAD_FETCH, manifest.payload_fetch)
        text = self._severed_copy(suit.ENV_TEXT, manifest.text)
        return replace(
            manifest,
            install=manifest.install if install is None
            else decode_sequence(install, "severed install"),
            payload_fetch=manifest.payload_fetch if fetch is None
            else decode_sequence(fetch, "severed payload-fetch"),
            text=manifest.text if text is None else Text.decode(text),
        )

    def _severed_copy(self, key: int, in_manifest: object) -> bytes | None:
        """The envelope's copy of severable member `key`, checked against the manifest's
        digest of it; None when the envelope has no copy."""
        member = self._members.get(key)
        if member is None:
            return None
        if not isinstance(in_manifest, Digest):
            raise SeverableMemberDigestError(
                f"envelope member {key} is not covered by a digest in the manifest")
        if hashlib.sha256(cbor.bstr_wrap(member)).digest() != in_manifest.value:
            raise SeverableMemberDigestError(f"severable member {key} does not match "
                                             "the digest in the manifest")
        return member

    # --- payload ----------------------------------------------------------------------------

    def payload(self, chunk_size: int = CHUNK_SIZE,
                base: BaseImage | None = None) -> Iterator[bytes]:
        """Yield the image the integrated payload carries, authenticated first: the payload
        itself, or what it decodes to (zstd; a delta applied to `base`). Raise at once on
        excess bytes and at the end on a short image or a digest mismatch: every byte
        yielded is hashed against the signed image-digest."""
        length, size, encoding = self._start_payload()
        if encoding is None:
            if length > size:
                raise PayloadTooLongError(f"payload is {length} bytes but the manifest "
                                          f"declares {size}")
            if length < size:
                raise PayloadTooShortError(f"payload is {length} bytes but the manifest "
                                           f"declares {size}")
            yield from self._hashed(self._raw(length, chunk_size), size)
            return
        if length > encoded_bound(size):
            raise PayloadTooLongError(f"the {encoding.describe()} payload is {length} bytes, "
                                      f"more than an encoding of {size} bytes may take")
        yield from self._hashed(decoded(encoding, self._raw(length, chunk_size), size, base,
                                        chunk_size), size)

    def installed_image(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """For a stream that is the envelope's header followed by a slot's first image-size
        bytes (how a slot is verified): those bytes, hashed against the signed digest. For a
        plain payload this is payload(); the slot of an encoded one holds the decoded image,
        not the payload."""
        length, size, encoding = self._start_payload()
        if encoding is None and length != size:
            raise PayloadTooLongError(f"payload is {length} bytes but the manifest declares "
                                      f"{size}")
        yield from self._hashed(self._raw(size, chunk_size), size)

    def _start_payload(self) -> tuple[int, int, PayloadEncoding | None]:
        """The payload's length, the signed image size and the payload's encoding."""
        if self._state is not _State.AUTHENTICATED or self._verified is None:
            raise RuntimeError("payload() requires a successful authenticate() first")
        self._state = _State.STREAMING
        ref, info = self._verified.payload, self._verified.info
        if ref is None:
            raise MissingMemberError("the SFUI has no integrated payload")
        if info.payload_uri != ref.key:  # the draft keys an integrated payload by its URI
            raise SchemaError(f"integrated payload {ref.key!r} is not the one the manifest "
                              f"installs ({info.payload_uri!r})")
        if info.image_size is None or info.image_digest is None:
            raise MissingMemberError("manifest declares no image-size or image-digest")
        return ref.length, info.image_size, self._verified.encoding

    def _raw(self, length: int, chunk_size: int) -> Iterator[bytes]:
        remaining = length
        while remaining:
            chunk = self._stream.read(min(chunk_size, remaining))
            if not chunk:
                raise PayloadTooShortError(f"payload truncated: {length - remaining} of "
                                           f"{length} bytes arrived")
            remaining -= len(chunk)
            yield chunk

    def _hashed(self, chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
        assert self._verified is not None and self._verified.info.image_digest is not None
        hasher = hashlib.sha256()
        produced = 0
        for chunk in chunks:
            produced += len(chunk)
            if produced > size:
                raise PayloadTooLongError(f"the payload decodes to more than the signed "
                                          f"image-size {size}")
            hasher.update(chunk)
            yield chunk
        if produced < size:
            raise PayloadTooShortError(f"the payload decodes to {produced} of the {size} "
                                       "bytes signed")
        if hasher.digest() != self._verified.info.image_digest.value:
            raise PayloadDigestError("payload does not match the signed image-digest")
        if self._remaining_items:
            raise UnsupportedError("more than one integrated payload")
        self._finish_envelope()
        self._state = _State.DONE


__all__ = ["EnvelopeReader", "PayloadRef", "SignatureInfo", "Verified",
           "manifest_digest"]
