"""Typed SUIT structures with symmetric encode/decode.

`decode` accepts exactly what `encode` can produce plus what draft-ietf-suit-manifest allows
that we understand; everything else raises a precise FormatError. Decoding never trusts
the input: every member is type-checked and every command sequence is walked for unknown
commands, also inside try-each and run-sequence.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2

from sfupdate.errors import (
    MissingMemberError,
    SchemaError,
    UnknownCommandError,
    UnsupportedError,
)
from sfupdate.formats.schema import (
    BOOL,
    INT,
    UINT,
    Field,
    Kind,
    Schema,
    Where,
    blob,
    integer,
    list_of,
    nullable,
)
from sfupdate.formats.schema import text as text_kind
from sfupdate.formats.sfui import cbor, suit

ComponentId = tuple[bytes, ...]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SchemaError(message)


_UNSIGNED: Final = integer(0)
_is_uint = _UNSIGNED.accepts


@dataclass(frozen=True)
class Digest:
    """SUIT_Digest: [algorithm-id, digest-bytes]. Only SHA-256 is accepted."""

    value: bytes
    algorithm: int = suit.DIGEST_SHA256

    def to_cbor(self) -> list[Any]:
        return [self.algorithm, self.value]

    def encode(self) -> bytes:
        return cbor.dumps(self.to_cbor())

    @classmethod
    def from_cbor(cls, obj: Any, what: str) -> Digest:
        _require(
            isinstance(obj, list) and len(obj) == 2 and isinstance(obj[1], bytes),
            f"{what} is not a SUIT_Digest [alg, bytes]",
        )
        if obj[0] != suit.DIGEST_SHA256:
            raise UnsupportedError(f"{what} uses digest algorithm {obj[0]!r}; only SHA-256 (-16)")
        _require(len(obj[1]) == 32, f"{what} is not 32 bytes long")
        return cls(obj[1], obj[0])

    @classmethod
    def decode(cls, data: bytes, what: str) -> Digest:
        return cls.from_cbor(cbor.loads(data, what), what)


@dataclass(frozen=True)
class Command:
    """One SUIT command: a condition or directive code and its argument."""

    code: int
    argument: Any


CommandSequence = tuple[Command, ...]


def encode_sequence(commands: CommandSequence) -> bytes:
    flat: list[Any] = []
    for command in commands:
        flat += [command.code, command.argument]
    return cbor.dumps(flat)


def decode_sequence(data: bytes, what: str, depth: int = 0) -> CommandSequence:
    """Decode and fully validate a SUIT_Command_Sequence (recursing into nested ones)."""
    if depth > 4:
        raise SchemaError(f"{what}: command sequences nested too deeply")
    items = cbor.loads(data, what, tags=cbor.SEQUENCE_TAGS)
    _require(isinstance(items, list) and len(items) > 0 and len(items) % 2 == 0,
             f"{what} is not a non-empty list of command/argument pairs")
    commands = []
    for code, argument in zip(items[::2], items[1::2], strict=True):
        _check_command(code, argument, what, depth)
        commands.append(Command(code, argument))
    return tuple(commands)


def _check_command(code: Any, argument: Any, what: str, depth: int) -> None:
    if not INT.accepts(code):
        raise SchemaError(f"{what}: command code {code!r} is not an integer")
    if code < 0:  # suit-command-custom: vendor-defined, allowed by the schema
        _require(argument is None or isinstance(argument, (bytes, str, int)),
                 f"{what}: custom command {code} has a bad argument")
        return
    if code not in suit.KNOWN_COMMANDS:
        raise UnknownCommandError(f"{what}: unknown SUIT command {code}")
    if code in suit.REP_POLICY_COMMANDS:
        _require(_is_uint(argument), f"{what}: command {code} needs a reporting policy (uint)")
    elif code == suit.DIR_SET_COMPONENT_INDEX:
        _require(
            argument is True or _is_uint(argument)
            or (isinstance(argument, list) and bool(argument) and all(map(_is_uint, argument))),
            f"{what}: set-component-index has a bad argument",
        )
    elif code in (suit.DIR_SET_PARAMETERS, suit.DIR_OVERRIDE_PARAMETERS):
        check_parameters(argument, what)
    elif code == suit.DIR_RUN_SEQUENCE:
        _require(isinstance(argument, bytes), f"{what}: run-sequence needs a byte string")
        decode_sequence(argument, what, depth + 1)
    elif code == suit.DIR_TRY_EACH:
        _require(isinstance(argument, list) and len(argument) >= 1,
                 f"{what}: try-each needs a list of sequences")
        for i, branch in enumerate(argument):
            if branch is None and i == len(argument) - 1 and i > 0:
                continue
            _require(isinstance(branch, bytes), f"{what}: try-each branch is not a byte string")
            decode_sequence(branch, what, depth + 1)


@dataclass(frozen=True)
class Pen:
    """A vendor ID given as an IANA Private Enterprise Number: the draft's cbor-pen,
    #6.112(bstr), a relative OID (RFC 9090) under 1.3.6.1.4.1 holding the one arc that is the
    enterprise's number."""

    number: int

    def __str__(self) -> str:
        return f"PEN {self.number}"

    @classmethod
    def from_cbor(cls, obj: Any, what: str) -> Pen:
        _require(isinstance(obj, cbor2.CBORTag) and obj.tag == cbor.TAG_CBOR_PEN
                 and isinstance(obj.value, bytes), f"{what} is neither a UUID nor a CBOR PEN")
        arcs = _relative_oid_arcs(obj.value, what)
        _require(len(arcs) == 1, f"{what}: a PEN is one relative-OID arc, not {len(arcs)}")
        return cls(arcs[0])


def _relative_oid_arcs(data: bytes, what: str) -> list[int]:
    """The arcs of a relative OID's contents (X.690 8.20, as RFC 9090 tag 112 carries them):
    base-128 big-endian, every byte but an arc's last with bit 8 set, no leading 0x80. Each
    arc is an SMI sub-identifier, at most 2**32 - 1."""
    _require(bool(data) and data[-1] < 0x80, f"{what}: malformed relative OID")
    arcs: list[int] = []
    arc, start = 0, True
    for byte in data:
        _require(not (start and byte == 0x80), f"{what}: relative OID arc has a leading zero")
        arc = arc << 7 | byte & 0x7F
        _require(arc < 1 << 32, f"{what}: relative OID arc exceeds 32 bits")
        start = byte < 0x80
        if start:
            arcs.append(arc)
            arc = 0
    return arcs


_UUID: Final = blob(16, 16)
#: suit-parameter-custom (negative keys): int / bool / tstr / bstr.
_CUSTOM: Final = Kind("an integer, text or byte string",
                      lambda value: isinstance(value, int | str | bytes))
#: Each parameter this implementation reads, and what its value must be. The vendor-id (a
#: UUID or a cbor-pen) and the image-digest (an encoded SUIT_Digest) are then read deeper.
_PARAMETERS: Final[Mapping[int, Kind]] = {
    suit.PARAM_VENDOR_ID: Kind("a 16-byte UUID or a CBOR PEN", lambda value: True),
    suit.PARAM_CLASS_ID: _UUID, suit.PARAM_DEVICE_ID: _UUID,
    suit.PARAM_IMAGE_DIGEST: blob(),
    suit.PARAM_IMAGE_SIZE: _UNSIGNED, suit.PARAM_COMPONENT_SLOT: _UNSIGNED,
    suit.PARAM_SOURCE_COMPONENT: _UNSIGNED,
    suit.PARAM_STRICT_ORDER: BOOL, suit.PARAM_SOFT_FAILURE: BOOL,
    suit.PARAM_CONTENT: blob(), suit.PARAM_INVOKE_ARGS: blob(),
    suit.PARAM_ENCRYPTION_INFO: blob(),
    suit.PARAM_FETCH_ARGUMENTS: blob(),
    suit.PARAM_URI: text_kind(),
}


def check_parameters(params: Any, what: str) -> None:
    _require(isinstance(params, dict) and bool(params), f"{what}: parameters must be a map")
    for key, value in params.items():
        if not INT.accepts(key):
            raise SchemaError(f"{what}: parameter key {key!r} is not an integer")
        kind = _CUSTOM if key < 0 else _PARAMETERS.get(key)
        if kind is None:
            raise SchemaError(f"{what}: unknown SUIT parameter {key}")
        kind.parse(value, Where(what, f"parameter {key}"), SchemaError)
        if key == suit.PARAM_VENDOR_ID and not _UUID.accepts(value):
            Pen.from_cbor(value, f"{what}: vendor-id")
        elif key == suit.PARAM_IMAGE_DIGEST:
            Digest.decode(value, f"{what}: image-digest")


def _sequence(what: str) -> Kind:
    """A member holding a command sequence (a bstr), nullable; loaded decoded and checked."""
    return nullable(Kind(f"a byte string ({what})", blob().accepts,
                         lambda data: decode_sequence(data, what), encode_sequence))


def _sequence_or_digest(what: str) -> Kind:
    """A severable member: the sequence itself, or the digest of it once severed."""
    def load(value: Any) -> SeverableSequence:
        if isinstance(value, list):
            return Digest.from_cbor(value, f"{what} digest")
        return decode_sequence(value, what)

    def dump(value: CommandSequence | Digest) -> Any:
        return value.to_cbor() if isinstance(value, Digest) else encode_sequence(value)

    return nullable(Kind("a sequence or a digest", lambda value: isinstance(value, bytes | list),
                         load, dump))


_COMMON: Final = Schema(
    "common",
    Field(suit.COMMON_COMPONENTS, list_of(list_of(blob()), min_items=1), name="components"),
    Field(suit.COMMON_SHARED_SEQUENCE, _sequence("shared sequence"), name="shared_sequence",
          optional=True))


@dataclass(frozen=True)
class Common:
    """SUIT_Common: the components and the shared sequence."""

    components: tuple[ComponentId, ...]
    shared_sequence: CommandSequence = ()

    def encode(self) -> bytes:
        return cbor.dumps(_COMMON.dump({"components": self.components,
                                        "shared_sequence": self.shared_sequence or None}))

    @classmethod
    def decode(cls, data: bytes) -> Common:
        obj = cbor.loads(data, "common")
        if isinstance(obj, dict) and suit.COMMON_DEPENDENCIES in obj:
            raise UnsupportedError("manifests with dependencies are not supported")
        fields = _COMMON.load(obj, SchemaError, missing=MissingMemberError)
        return cls(fields["components"], fields["shared_sequence"] or ())


TextEntries = Mapping[int, str]
_LANGUAGE_TAG = re.compile(r"[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*")


@dataclass(frozen=True)
class LocalizedText:
    """One language's SUIT_Text_LMap: manifest-level strings and per-component strings."""

    entries: TextEntries = field(default_factory=dict)
    components: Mapping[ComponentId, TextEntries] = field(default_factory=dict)

    def to_cbor(self) -> dict[Any, Any]:
        obj: dict[Any, Any] = dict(self.entries)
        for component, entries in self.components.items():
            obj[tuple(component)] = dict(entries)  # a tuple encodes as a CBOR array key
        return obj

    @classmethod
    def from_cbor(cls, obj: Any, language: str) -> LocalizedText:
        _require(isinstance(obj, dict), f"text for {language!r} is not a map")
        entries: dict[int, str] = {}
        components: dict[ComponentId, dict[int, str]] = {}
        for key, value in obj.items():
            if _is_uint(key):
                _require(isinstance(value, str), f"text entry {key} is not a string")
                entries[key] = value
            elif isinstance(key, tuple) and all(isinstance(p, bytes) for p in key):
                _require(
                    isinstance(value, dict)
                    and all(_is_uint(k) and isinstance(v, str) for k, v in value.items()),
                    "component text is not a map of strings",
                )
                components[key] = dict(value)
            else:
                raise SchemaError(f"text has an unexpected key {key!r}")
        return cls(entries, components)


@dataclass(frozen=True)
class Text:
    """SUIT_Text_Map: per language tag (RFC 5646), a LocalizedText."""

    languages: Mapping[str, LocalizedText]

    def encode(self) -> bytes:
        return cbor.dumps({tag: text.to_cbor() for tag, text in self.languages.items()})

    @classmethod
    def decode(cls, data: bytes) -> Text:
        obj = cbor.loads(data, "text")
        _require(isinstance(obj, dict) and bool(obj), "text is not a non-empty map")
        languages = {}
        for tag, value in obj.items():
            _require(isinstance(tag, str) and _LANGUAGE_TAG.fullmatch(tag) is not None,
                     f"text key {tag!r} is not a language tag")
            languages[tag] = LocalizedText.from_cbor(value, tag)
        return cls(languages)

    def preferred(self) -> LocalizedText:
        """English if present, else the first language."""
        for tag, text in self.languages.items():
            if tag.lower().split("-")[0] == "en":
                return text
        return next(iter(self.languages.values()))

    def description(self) -> str | None:
        return self.preferred().entries.get(suit.TEXT_MANIFEST_DESCRIPTION)

    def component_version(self) -> str | None:
        for entries in self.preferred().components.values():
            if suit.TEXT_COMPONENT_VERSION in entries:
                return entries[suit.TEXT_COMPONENT_VERSION]
        return None


SeverableSequence = CommandSequence | Digest | None


@dataclass(frozen=True)
class Manifest:
    """SUIT_Manifest. Severable members hold either their content or the digest of it."""

    sequence_number: int
    common: Common
    validate: CommandSequence | None = None
    load: CommandSequence | None = None
    invoke: CommandSequence | None = None
    payload_fetch: SeverableSequence = None
    install: SeverableSequence = None
    text: Text | Digest | None = None
    reference_uri: str | None = None
    component_id: ComponentId | None = None

    def encode(self) -> bytes:
        return cbor.dumps(_MANIFEST.dump({**vars(self), "version": 1}))

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        fields = _MANIFEST.load(cbor.loads(data, "manifest"), SchemaError,
                                missing=MissingMemberError)
        del fields["version"]  # _VERSION refused any other than 1
        return cls(**fields)

    def all_sequences(self) -> Iterator[CommandSequence]:
        yield self.common.shared_sequence
        for seq in (self.validate, self.load, self.invoke, self.payload_fetch, self.install):
            if isinstance(seq, tuple):
                yield seq


def _version(value: Any) -> int:
    if value != 1:
        raise UnsupportedError(f"manifest-version {value!r} (only 1)")
    return 1


def _text(value: bytes | list[Any]) -> Text | Digest:
    return Digest.from_cbor(value, "text digest") if isinstance(value, list) else Text.decode(value)


_VERSION: Final = Kind("1", lambda value: True, _version)
_MANIFEST: Final = Schema(
    "manifest",
    Field(suit.MAN_VERSION, _VERSION, name="version"),
    Field(suit.MAN_SEQUENCE_NUMBER, UINT, name="sequence_number"),
    Field(suit.MAN_COMMON, Kind("a byte string", blob().accepts, Common.decode, Common.encode),
          name="common"),
    Field(suit.MAN_REFERENCE_URI, nullable(text_kind()), name="reference_uri", optional=True),
    Field(suit.MAN_COMPONENT_ID, nullable(list_of(blob())), name="component_id",
          optional=True),
    Field(suit.MAN_VALIDATE, _sequence("validate"), name="validate", optional=True),
    Field(suit.MAN_LOAD, _sequence("load"), name="load", optional=True),
    Field(suit.MAN_INVOKE, _sequence("invoke"), name="invoke", optional=True),
    Field(suit.MAN_PAYLOAD_FETCH, _sequence_or_digest("payload-fetch"), name="payload_fetch",
          optional=True),
    Field(suit.MAN_INSTALL, _sequence_or_digest("install"), name="install", optional=True),
    Field(suit.MAN_TEXT, nullable(Kind("a map or a digest",
                                       lambda value: isinstance(value, bytes | list), _text,
                                       lambda value: value.to_cbor()
                                       if isinstance(value, Digest) else value.encode())),
          name="text", optional=True))


@dataclass(frozen=True)
class ImageInfo:
    """What a single-image SFUI says about its image, read from the top-level commands."""

    sequence_number: int
    components: tuple[ComponentId, ...]
    vendor_id: uuid.UUID | None  # None also when the vendor is given as a PEN
    vendor_pen: Pen | None
    class_id: uuid.UUID | None
    image_digest: Digest | None
    image_size: int | None
    payload_uri: str | None
    checks_vendor: bool
    checks_class: bool
    #: The SUIT_Encryption_Info the payload is decrypted with (encryption.py reads it).
    encryption_info: bytes | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ImageInfo:
        """Read component 0's parameters as the top-level sequences set them."""
        params, codes = _component_parameters(manifest)
        first = params[0]
        digest = first.get(suit.PARAM_IMAGE_DIGEST)
        vendor = first.get(suit.PARAM_VENDOR_ID)
        klass = first.get(suit.PARAM_CLASS_ID)
        return cls(
            sequence_number=manifest.sequence_number,
            components=manifest.common.components,
            vendor_id=uuid.UUID(bytes=vendor) if isinstance(vendor, bytes) else None,
            vendor_pen=None if vendor is None or isinstance(vendor, bytes)
            else Pen.from_cbor(vendor, "vendor-id"),
            class_id=uuid.UUID(bytes=klass) if klass else None,
            image_digest=Digest.decode(digest, "image-digest") if digest else None,
            image_size=first.get(suit.PARAM_IMAGE_SIZE),
            payload_uri=first.get(suit.PARAM_URI),
            checks_vendor=suit.COND_VENDOR_ID in codes,
            checks_class=suit.COND_CLASS_ID in codes,
            encryption_info=first.get(suit.PARAM_ENCRYPTION_INFO),
        )


def _component_parameters(manifest: Manifest) -> tuple[dict[int, dict[int, Any]], set[int]]:
    """Parameters per component index after the shared, payload-fetch and install sequences
    (top level only: branches of try-each depend on the device and are not evaluated)."""
    count = len(manifest.common.components)
    params: dict[int, dict[int, Any]] = {i: {} for i in range(count)}
    codes: set[int] = set()
    sequences = [manifest.common.shared_sequence]
    sequences += [s for s in (manifest.payload_fetch, manifest.install) if isinstance(s, tuple)]
    for sequence in sequences:
        selected = [0]  # every sequence starts on component index 0
        for command in sequence:
            codes.add(command.code)
            arg = command.argument
            if command.code == suit.DIR_SET_COMPONENT_INDEX:
                selected = (list(range(count)) if arg is True
                            else [arg] if isinstance(arg, int) else list(arg))
                if any(i >= count for i in selected):
                    raise SchemaError(f"component index {max(selected)} is out of range")
            elif command.code == suit.DIR_OVERRIDE_PARAMETERS:
                for i in selected:
                    params[i].update(arg)
            elif command.code == suit.DIR_SET_PARAMETERS:
                for i in selected:
                    for key, value in arg.items():
                        params[i].setdefault(key, value)
    return params, codes
