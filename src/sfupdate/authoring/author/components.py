"""Sign several firmware files, one per named component, into ONE SFUI, streaming.

The manifest lists the components in the order given (`suit-components`, identifiers
`[h'<name>']`) and expresses them as draft-ietf-suit-manifest's multi-image examples do: the
shared sequence selects every component (`set-component-index true`) to set and check vendor
and class, then each component by its index to set its own image digest and size; the install
sequence fetches each component from its integrated payload `"#<name>"` and checks it; the
validate sequence checks every component's image; invoke starts component 0. One signature
covers the set, and its sequence number is the set's version.

As in `sfupdate.authoring.author.sign` (one pass over each file, memory flat), every payload is
copied and hashed at its final offset first and the signed prefix is written in front at the
end: every field before the payloads has a size known before hashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sfupdate.authoring.author.atomic import atomic_output
from sfupdate.authoring.author.sign import (
    TEXT_LANGUAGE,
    ImageSpec,
    _check_signers,
    _Placeholder,
    _stream_payload,
    signed_members,
    write_prefix,
)
from sfupdate.errors import SchemaError, UsageError
from sfupdate.formats.sfui import cbor, suit
from sfupdate.formats.sfui.components import MAX_COMPONENTS, check_name, component_id
from sfupdate.formats.sfui.cose import Signer
from sfupdate.formats.sfui.model import Command, Common, Digest, LocalizedText, Manifest, Text
from sfupdate.formats.sfui.writer import envelope_prefix, payload_head, payload_order
from sfupdate.progress import Progress, no_progress


@dataclass(frozen=True)
class ComponentImage:
    """One component's image as signed: its name, SHA-256 and size."""

    name: str
    digest: bytes
    size: int

    @property
    def uri(self) -> str:
        """The URI of its integrated payload, which is also the payload's envelope key."""
        return f"#{self.name}"


@dataclass(frozen=True)
class SignedSet:
    path: Path
    manifest: Manifest
    components: tuple[ComponentImage, ...]
    envelope_size: int


def build_set_manifest(spec: ImageSpec, images: Sequence[ComponentImage],
                       text: Text | None) -> Manifest:
    """The manifest of a set of components, each installed from its integrated payload."""
    if not 0 <= spec.sequence_number < 1 << 64:
        raise UsageError("sequence number must be an unsigned 64-bit integer")
    report = suit.REPORT_ALL
    shared = [
        Command(suit.DIR_SET_COMPONENT_INDEX, True),
        Command(suit.DIR_OVERRIDE_PARAMETERS, {suit.PARAM_VENDOR_ID: spec.vendor_id.bytes,
                                               suit.PARAM_CLASS_ID: spec.class_id.bytes}),
        Command(suit.COND_VENDOR_ID, report),
        Command(suit.COND_CLASS_ID, report),
    ]
    install: list[Command] = []
    validate: list[Command] = []
    for index, image in enumerate(images):
        select = Command(suit.DIR_SET_COMPONENT_INDEX, index)
        shared += [select, Command(suit.DIR_OVERRIDE_PARAMETERS, {
            suit.PARAM_IMAGE_DIGEST: Digest(image.digest).encode(),
            suit.PARAM_IMAGE_SIZE: image.size})]
        install += [select, Command(suit.DIR_OVERRIDE_PARAMETERS, {suit.PARAM_URI: image.uri}),
                    Command(suit.DIR_FETCH, report), Command(suit.COND_IMAGE_MATCH, report)]
        validate += [select, Command(suit.COND_IMAGE_MATCH, report)]
    text_digest = Digest(hashlib.sha256(cbor.bstr_wrap(text.encode())).digest()) if text else None
    return Manifest(
        sequence_number=spec.sequence_number,
        common=Common(tuple(component_id(image.name) for image in images), tuple(shared)),
        validate=tuple(validate),
        invoke=(Command(suit.DIR_SET_COMPONENT_INDEX, 0), Command(suit.DIR_INVOKE, report)),
        install=tuple(install),
        text=text_digest,
    )


def _text(spec: ImageSpec, first: str) -> Text | None:
    """The description, and the version text as the first component's."""
    entries = {suit.TEXT_MANIFEST_DESCRIPTION: spec.description} if spec.description else {}
    components = ({component_id(first): {suit.TEXT_COMPONENT_VERSION: spec.version_text}}
                  if spec.version_text else {})
    if not entries and not components:
        return None
    return Text({TEXT_LANGUAGE: LocalizedText(entries, components)})


def _prefix(spec: ImageSpec, images: Sequence[ComponentImage], signers: Sequence[Signer]
            ) -> tuple[Manifest, bytes]:
    """The signed manifest and the envelope up to the first payload's bytes (payloads in the
    envelope's key order)."""
    text = _text(spec, images[0].name)
    manifest = build_set_manifest(spec, images, text)
    members = signed_members(manifest, text, signers)
    first = _in_envelope_order(images)[0]
    return manifest, envelope_prefix(members, first.uri, first.size, payloads=len(images))


def _in_envelope_order(images: Sequence[ComponentImage]) -> list[ComponentImage]:
    by_uri = {image.uri: image for image in images}
    return [by_uri[uri] for uri in payload_order(by_uri)]


def _check_names(files: Sequence[tuple[str, Path]]) -> None:
    if not 1 <= len(files) <= MAX_COMPONENTS:
        raise UsageError(f"an SFUI holds 1 to {MAX_COMPONENTS} components, not {len(files)}")
    names = [name for name, _ in files]
    for name in names:
        try:
            check_name(name)
        except SchemaError as exc:
            raise UsageError(str(exc)) from None
    if len(set(names)) != len(names):
        raise UsageError("a component is named twice")


@contextlib.contextmanager
def _sources(files: Sequence[tuple[str, Path]]) -> Iterator[dict[str, io.FileIO]]:
    with contextlib.ExitStack() as stack:
        opened = {}
        for name, path in files:
            try:
                opened[name] = stack.enter_context(open(path, "rb", buffering=0))
            except OSError as exc:
                raise UsageError(f"cannot read component {name} from {path}: "
                                 f"{exc.strerror}") from None
        yield opened


def sign_components(files: Sequence[tuple[str, Path]], output: Path, signer: Signer,
                    spec: ImageSpec, progress: Progress = no_progress,
                    cosigners: Sequence[Signer] = ()) -> SignedSet:
    """Sign (name, file) pairs into one SFUI at `output`, written atomically (temp file,
    fsync, rename); component 0 is the first pair. `cosigners` add their own signatures, as
    in sign_firmware."""
    _check_names(files)
    signers = (signer, *cosigners)
    _check_signers(signers)
    with atomic_output(output, "the components") as tmp, _sources(files) as sources, \
            open(tmp, "wb") as dst:
        sizes = {name: os.fstat(src.fileno()).st_size for name, src in sources.items()}
        unsigned = [ComponentImage(name, bytes(32), sizes[name]) for name, _ in files]
        _, placeholder = _prefix(spec, unsigned, [_Placeholder(s) for s in signers])
        dst.seek(len(placeholder))
        digests = _stream_all(sources, _in_envelope_order(unsigned), dst, progress)
        images = [ComponentImage(name, digests[name], sizes[name]) for name, _ in files]
        manifest, prefix = _prefix(spec, images, signers)
        write_prefix(dst, prefix, len(placeholder))
        size = dst.seek(0, os.SEEK_END)
    return SignedSet(output, manifest, tuple(images), size)


def _stream_all(sources: dict[str, io.FileIO], order: Sequence[ComponentImage],
                dst: BinaryIO, progress: Progress) -> dict[str, bytes]:
    """Each component's payload at its place (the first one's head is in the prefix); the
    digest of each."""
    total = sum(image.size for image in order)
    done = 0
    digests = {}
    for position, image in enumerate(order):
        if position:
            dst.write(payload_head(image.uri, image.size))
        digests[image.name] = _stream_payload(sources[image.name], dst, image.size,
                                              _offset(progress, done, total), None)
        done += image.size
    return digests


def _offset(progress: Progress, base: int, total: int) -> Progress:
    """One file's progress as part of all of them."""
    return lambda done, _size: progress(base + done, total)
