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
    UnknownTagError,
    UnsupportedError,
)
from sfupdate.formats.delta.patch import BaseImage
from sfupdate.formats.sfui import cbor, suit
from sfupdate.formats.sfui.components import Part, parts
from sfupdate.formats.sfui.cose import Sign1, TrustedKey, distinct_signers
from sfupdate.formats.sfui.decode import decoded
from sfupdate.formats.sfui.encoding import PayloadEncoding, encoded_bound, payload_encoding
from sfupdate.formats.sfui.encryption import ContentCipher, EncryptionInfo
from sfupdate.formats.sfui.hashing import BackgroundHash
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
    signer: TrustedKey  # the first of `signers`
    payload: PayloadRef | None
    #: every distinct trusted key whose signature over the manifest digest verified, in the
    #: order of their authentication blocks (a key that signed twice counts once)
    signers: tuple[TrustedKey, ...]
    #: The payload's SUIT_Encryption_Info, decoded; None for a payload in clear.
    encryption: EncryptionInfo | None = None
    #: How the payload is encoded for transport (zstd, a delta); None: it is the image.
    encoding: PayloadEncoding | None = None

    @property
    def overhead(self) -> int:
        """How much longer the envelope's payload is than the image (an AEAD tag)."""
        return self.encryption.overhead if self.encryption is not None else 0


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
        self._previous_key = b""
        self._drained = False
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
        self._remaining_items = count
        while self._remaining_items:
            key, length = self._read_member_head()
            if isinstance(key, str):
                self.payload_ref = PayloadRef(key, length)
                return  # the payload itself is streamed later, after authentication
            if key not in suit.ENVELOPE_MEMBERS:
                raise SchemaError(f"unknown envelope member {key}")
            limit = {suit.ENV_AUTHENTICATION: MAX_AUTH_SIZE,
                     suit.ENV_MANIFEST: MAX_MANIFEST_SIZE}.get(key, MAX_SEVERABLE_SIZE)
            if length > limit:
                raise LimitExceededError(f"envelope member {key} is {length} bytes "
                                         f"(at most {limit})")
            self._members[key] = cbor.read_exact(self._stream, length,
                                                 f"envelope member {key}")
        self._finish_envelope()

    def _read_member_head(self) -> tuple[int | str, int]:
        """The next member's key (an integer, or the text key of an integrated payload) and
        the length of its byte-string value, whose bytes are next in the stream."""
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
        if encoded_key <= self._previous_key:
            raise EncodingError("envelope keys are duplicated or not in deterministic order")
        self._previous_key = encoded_key
        self._remaining_items -= 1
        vmajor, length, _ = cbor.read_head(self._stream, "envelope member")
        if vmajor != cbor.MAJOR_BSTR:
            raise SchemaError("an envelope member is not a byte string")
        if major != cbor.MAJOR_TSTR:
            return key_value, length
        try:
            return raw.decode("utf-8"), length
        except UnicodeDecodeError:
            raise EncodingError("payload key is not valid UTF-8") from None

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
        """Check the signatures over the manifest digest, then the manifest itself. Every
        authentication block is verified (draft-ietf-suit-manifest allows several
        COSE_Sign1 blocks after the digest); `Verified.signers` are the distinct trusted keys
        whose signature verified, and how many of them are needed is the caller's policy.
        A block by a key not in `trusted` is skipped; none verifying raises the first
        block's error."""
        if self._state is not _State.PARSED:
            raise RuntimeError("authenticate() may be called once, before the payload")
        digest_bytes, blocks = self._auth_wrapper()
        if not blocks:
            raise AuthenticationError("envelope carries no signature (no authentication block)")
        digest = Digest.decode(digest_bytes, "manifest digest")
        signers = distinct_signers(blocks, lambda block: block.verify(digest_bytes, trusted))
        if manifest_digest(self.manifest_bytes) != digest.value:
            raise ManifestDigestError("manifest does not match the signed digest")
        manifest = self._with_severed(Manifest.decode(self.manifest_bytes))
        text = manifest.text if isinstance(manifest.text, Text) else None
        info = ImageInfo.from_manifest(manifest)
        components = len(manifest.common.components)
        if components > 1 and self.payload_ref is not None \
                and self._remaining_items + 1 != components:  # only payloads may follow
            raise SchemaError(f"the envelope carries {self._remaining_items + 1} integrated "
                              f"payloads for {components} components")
        encryption = (EncryptionInfo.decode(info.encryption_info)
                      if info.encryption_info is not None else None)
        encoding = payload_encoding(manifest)
        if (encryption is not None or encoding is not None) and components > 1:
            raise UnsupportedError("an encrypted, compressed or delta payload is supported "
                                   "for one component only")
        self._verified = Verified(manifest, info, text, signers[0], self.payload_ref, signers,
                                  encryption, encoding)
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
    #
    # A payload streams through these stages, each in bounded memory: read from the envelope,
    # decrypted (an encrypted payload, with the content key), decoded (a compressed payload;
    # a delta applied to its base image), then counted and hashed against the signed image
    # size and digest, on a second thread while the consumer writes the chunk.

    def payload(self, chunk_size: int = CHUNK_SIZE, cipher: ContentCipher | None = None, *,
                base: BaseImage | None = None) -> Iterator[bytes]:
        """Yield the image the integrated payload carries, authenticated first; raise at once
        on excess bytes and at the end on a short image or a digest mismatch.

        An encrypted payload (the manifest has encryption info) needs `cipher`, made with the
        content key: the ciphertext is decrypted as it streams, its tag checked at the end,
        then the plaintext digest. A delta needs `base`, the image it applies to."""
        verified = self._start_streaming()
        ref, info = self._single_payload(verified)
        assert info.image_size is not None and info.image_digest is not None
        yield from self._chunks(ref, info.image_size, info.image_digest, chunk_size, cipher,
                                base)
        self._end_payload()

    def installed_image(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """For a stream that is the envelope's header followed by a slot's first image-size
        bytes (how a slot is verified): those bytes, hashed against the signed digest. For a
        plain payload this is payload(); the slot of an encrypted or encoded one holds the
        image, not the payload."""
        verified = self._start_streaming()
        ref, info = self._single_payload(verified)
        assert info.image_size is not None and info.image_digest is not None
        self._check_length(ref, info.image_size)
        yield from self._hashed(self._read(info.image_size, chunk_size), info.image_size,
                                info.image_digest)
        self._end_payload()

    def ciphertext(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield an encrypted payload as it is, checking only its length: for those who hold
        no content key (a repository admitting it, `sfu verify`). Its plaintext digest is
        checked by the recipient that decrypts it."""
        verified = self._start_streaming()
        ref, info = self._single_payload(verified)
        if verified.encryption is None:
            raise UnsupportedError("the payload is not encrypted: read it with payload()")
        assert info.image_size is not None
        self._check_length(ref, info.image_size)
        yield from self._read(ref.length, chunk_size)
        self._end_payload()

    def payloads(self, chunk_size: int = CHUNK_SIZE, cipher: ContentCipher | None = None,
                 base: BaseImage | None = None) -> Iterator[tuple[Part, Iterator[bytes]]]:
        """Each integrated payload in envelope order, with the component of the signed manifest
        whose URI is its key, and the chunks of its image (checked as payload() checks the one
        of a single component, `cipher` and `base` as there: an encrypted or encoded payload
        is one component's only). Drain each component's chunks before asking for the next
        component. That every component arrives, once, follows from authenticate() (one
        payload per component), the keys' strict order and each key naming a component."""
        verified = self._start_streaming()
        by_uri = {part.uri: part for part in parts(verified.manifest)}
        ref = verified.payload
        if ref is None:
            raise MissingMemberError("the SFUI has no integrated payload")
        while True:
            part = by_uri.get(ref.key)
            if part is None:
                raise SchemaError(f"integrated payload {ref.key!r} is not one the manifest "
                                  "installs")
            if part.size is None or part.digest is None:
                raise MissingMemberError(f"component {part.name} declares no image-size or "
                                         "image-digest")
            self._drained = False
            chunks = self._chunks(ref, part.size, part.digest, chunk_size, cipher, base)
            if not self._remaining_items:  # the last payload: its end is the envelope's
                chunks = self._then_end(chunks)
            yield part, chunks
            if not self._drained:
                raise RuntimeError(f"component {part.name}'s payload was not read to its end")
            if not self._remaining_items:
                return
            key, length = self._read_member_head()
            if not isinstance(key, str):  # _read_member_head's order check refuses it first
                raise EncodingError("an envelope member follows an integrated payload")
            ref = PayloadRef(key, length)

    def _then_end(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The last payload's chunks, then the envelope's end, checked before the consumer
        learns the payload is complete: nothing follows it."""
        yield from chunks
        self._finish_envelope()
        self._state = _State.DONE

    def every_payload(self, chunk_size: int = CHUNK_SIZE,
                      base: BaseImage | None = None) -> Iterator[bytes]:
        """The chunks of every integrated payload, each checked as it ends: for whoever
        verifies an SFUI whole rather than installs it (payload() for one component, else
        payloads(); an encrypted payload's ciphertext, whose length alone can be checked
        without its key; a delta applied to `base`)."""
        verified = self._verified
        if verified is not None and len(verified.manifest.common.components) > 1:
            return (chunk for _, chunks in self.payloads(chunk_size) for chunk in chunks)
        if verified is not None and verified.encryption is not None:
            return self.ciphertext(chunk_size)
        return self.payload(chunk_size, base=base)

    def _start_streaming(self) -> Verified:
        if self._state is not _State.AUTHENTICATED or self._verified is None:
            raise RuntimeError("the payload requires a successful authenticate() first")
        self._state = _State.STREAMING
        return self._verified

    @staticmethod
    def _single_payload(verified: Verified) -> tuple[PayloadRef, ImageInfo]:
        ref, info = verified.payload, verified.info
        if ref is None:
            raise MissingMemberError("the SFUI has no integrated payload")
        if info.payload_uri != ref.key:  # the draft keys an integrated payload by its URI
            raise SchemaError(f"integrated payload {ref.key!r} is not the one the manifest "
                              f"installs ({info.payload_uri!r})")
        if info.image_size is None or info.image_digest is None:
            raise MissingMemberError("manifest declares no image-size or image-digest")
        return ref, info

    def _check_length(self, ref: PayloadRef, size: int) -> None:
        """The payload's length against the signed image size: equal (plus an AEAD tag), or,
        encoded, at most what an encoding of that size may take."""
        assert self._verified is not None
        overhead, encoding = self._verified.overhead, self._verified.encoding
        if encoding is None:
            _check_exact_length(ref, size + overhead)
        elif ref.length > encoded_bound(size) + overhead:
            raise PayloadTooLongError(f"the {encoding.describe()} payload is {ref.length} "
                                      f"bytes, more than an encoding of {size} bytes may take")

    def _chunks(self, ref: PayloadRef, size: int, digest: Digest, chunk_size: int,
                cipher: ContentCipher | None = None,
                base: BaseImage | None = None) -> Iterator[bytes]:
        """The image one payload of `ref.length` bytes carries, which must be `size` bytes
        hashing to `digest`: decrypted with `cipher`, then decoded (with `base` for a delta),
        as it streams."""
        assert self._verified is not None
        encrypted, encoding = self._verified.encryption is not None, self._verified.encoding
        if encrypted == (cipher is None):
            raise UnsupportedError("the payload is encrypted: reading it needs the content key"
                                   if encrypted else "the payload is not encrypted")
        self._check_length(ref, size)
        stream = self._read(ref.length, chunk_size)
        if cipher is not None:
            stream = _decrypted(stream, cipher)
        if encoding is not None:
            stream = decoded(encoding, stream, size, base, chunk_size)
        yield from self._hashed(stream, size, digest)
        self._drained = True

    @staticmethod
    def _hashed(chunks: Iterator[bytes], size: int, digest: Digest) -> Iterator[bytes]:
        """`chunks`, counted against `size` and hashed against `digest` (on a second thread,
        while the consumer handles the chunk)."""
        produced = 0
        with BackgroundHash() as hasher:
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
            if hasher.digest() != digest.value:
                raise PayloadDigestError("payload does not match the signed image-digest")

    def _read(self, length: int, chunk_size: int) -> Iterator[bytes]:
        remaining = length
        while remaining:
            chunk = self._stream.read(min(chunk_size, remaining))
            if not chunk:
                raise PayloadTooShortError(f"payload truncated: {length - remaining} of "
                                           f"{length} bytes arrived")
            remaining -= len(chunk)
            yield chunk

    def _end_payload(self) -> None:
        if self._remaining_items:
            raise UnsupportedError("more than one integrated payload")
        self._finish_envelope()
        self._state = _State.DONE


def _decrypted(chunks: Iterator[bytes], cipher: ContentCipher) -> Iterator[bytes]:
    for chunk in chunks:
        yield cipher.update(chunk)
    yield cipher.finish()  # CiphertextTagError for a tampered GCM ciphertext


def _check_exact_length(ref: PayloadRef, expected: int) -> None:
    if ref.length > expected:
        raise PayloadTooLongError(f"payload is {ref.length} bytes but the manifest declares "
                                  f"{expected}")
    if ref.length < expected:
        raise PayloadTooShortError(f"payload is {ref.length} bytes but the manifest declares "
                                   f"{expected}")


__all__ = ["EnvelopeReader", "PayloadRef", "SignatureInfo", "Verified",
           "manifest_digest"]
