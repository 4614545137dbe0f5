"""Property tests: encode/decode is symmetric and total; no input escapes sfupdate.errors."""

from __future__ import annotations

import io
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfupdate import errors
from sfupdate.authoring.author import ImageSpec, build_manifest
from sfupdate.formats.sfui import EnvelopeReader, Manifest, Text, TrustedKey, cbor
from sfupdate.formats.sfui.model import LocalizedText, decode_sequence, encode_sequence
from tests.envelopes import envelope, manifest_for, read
from tests.world import CLASS, VENDOR

uint64 = st.integers(min_value=0, max_value=2**64 - 1)
texts = st.one_of(st.none(), st.text(max_size=40))
hostile = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(sequence=uint64, size=uint64, digest=st.binary(min_size=32, max_size=32),
       vendor=st.uuids(), klass=st.uuids(), version=texts, description=texts)
@settings(max_examples=200, deadline=None)
def test_manifest_round_trip(sequence: int, size: int, digest: bytes, vendor: uuid.UUID,
                             klass: uuid.UUID, version: str | None,
                             description: str | None) -> None:
    entries = {1: description} if description else {}
    components: dict[tuple[bytes, ...], dict[int, str]] = (
        {(b"firmware",): {6: version}} if version else {})
    text = Text({"en": LocalizedText(entries, components)}) if entries or components else None
    manifest = build_manifest(ImageSpec(sequence, vendor, klass), digest, size, text)
    encoded = manifest.encode()
    decoded = Manifest.decode(encoded)
    assert decoded == manifest
    assert decoded.encode() == encoded
    if text is not None:
        assert Text.decode(text.encode()) == text


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_random_bytes_never_escape_the_error_hierarchy(data: bytes) -> None:
    try:
        EnvelopeReader(io.BytesIO(data)).authenticate([])
    except errors.SfuError:
        return
    raise AssertionError("random bytes were accepted")


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_random_command_sequences_decode_or_fail_precisely(data: bytes) -> None:
    try:
        sequence = decode_sequence(data, "fuzz")
    except errors.FormatError:
        return
    assert cbor.loads(encode_sequence(sequence), "re-encoded") == cbor.loads(data, "input")


@given(data=st.data())
@hostile
def test_mutated_envelope_is_refused(data: st.DataObject, es256_signer,  # type: ignore[no-untyped-def]
                                     es256_trusted: TrustedKey) -> None:
    payload = b"payload!" * 8
    good = bytearray(envelope(manifest_for(payload), es256_signer, payload))
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255),
                                         st.sampled_from(["replace", "insert", "delete"])),
                               min_size=1, max_size=4))
    bad = bytearray(good)
    for at, value, kind in edits:
        at = min(at, len(bad) - 1)
        if kind == "replace":
            bad[at] = value
        elif kind == "insert":
            bad.insert(at, value)
        else:
            del bad[at]
    if bytes(bad) == bytes(good):
        return
    try:
        read(bytes(bad), [es256_trusted])
    except errors.SfuError:
        return
    raise AssertionError(f"mutated envelope accepted: {edits}")


def test_vendor_class_names_follow_the_draft() -> None:
    # draft-ietf-suit-manifest examples: vendor "arm.com", class "nRF52" / see tests/data.
    from sfupdate.formats.sfui import class_uuid, vendor_uuid
    assert vendor_uuid("example.com") == VENDOR
    assert class_uuid(VENDOR, "demo-board") == CLASS
    assert vendor_uuid(str(VENDOR)) == VENDOR
