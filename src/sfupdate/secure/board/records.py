"""Typed records kept in secure storage, and their deterministic CBOR encoding.

Record names (`RECORD_*`) are the keys in `SecureStorage`. Every record is a CBOR map with a
format version, so fields can be added later without a migration. Secure storage is MACed, but
a record is still parsed strictly: a record that does not decode is a StorageIntegrityError.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final, Self

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sfupdate.errors import DeviceStateError, SfuError, StorageIntegrityError
from sfupdate.formats.schema import (
    BOOL,
    INT,
    UUID,
    Field,
    Schema,
    blob,
    converted,
    enum_of,
    integer,
    list_of,
    nullable,
    record,
    tuple_of,
)
from sfupdate.formats.schema import text as text_kind
from sfupdate.formats.sfui import TrustedKey, cbor
from sfupdate.formats.sfui.uuids import class_uuid, vendor_uuid
from sfupdate.secure.board.hal import Slot

RECORD_DEVICE: Final = "device"  # DeviceInfo
RECORD_TRUST: Final = "trust"  # TrustStore
RECORD_BOOT: Final = "boot"  # BootRecord: boot control and the rollback floor
RECORD_IDENTITY: Final = "identity"  # the device identity private key, PKCS#8 DER (P-256)
#: A pre-shared A128KW key-encryption key for encrypted payloads (16 raw bytes), if provisioned.
RECORD_PAYLOAD_KEK: Final = "payload-kek"
RECORD_REMOTE: Final = "remote"  # RemoteState: last accepted command number, quarantine
RECORD_EVENTS: Final = "events"  # EventLog: integrity mismatches and remote actions (a ring)
RECORD_POLICY: Final = "policy"  # PolicyRecord: the installed signed integrity policy
RECORD_MEASURED: Final = "measured-boot"  # MeasuredBoot: what the boot code measured
RECORD_AGENT: Final = "agent"  # AgentRecord: which agent partition runs, trial, agent floor

DEFAULT_TRIES: Final = 3
FORMAT: Final = 1


TEXT: Final = text_kind()
DIGEST: Final = blob(32, 32)


def _schema(name: str, *fields: Field) -> Schema:
    """A record's fields. Keys a record does not name are ignored (a later version may add
    some), beside "format", which every record carries."""
    return Schema(f"secure storage record {name}", *fields, extra=True)


class StoredRecord:
    """A record of secure storage: the map of its `SCHEMA`'s fields and the format number.
    `decode` checks every field (StorageIntegrityError naming it), then `check()`s the
    record's own invariants."""

    SCHEMA: ClassVar[Schema]

    def encode(self) -> bytes:
        return cbor.dumps({"format": FORMAT, **self.SCHEMA.dump(self)})

    @classmethod
    def decode(cls, data: bytes) -> Self:
        schema = cls.SCHEMA
        try:
            obj = cbor.loads(data, schema.what)
        except SfuError as exc:
            raise StorageIntegrityError(f"{schema.what} is malformed: {exc}") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise StorageIntegrityError(f"{schema.what} has an unknown format")
        stored = cls(**schema.load(obj, StorageIntegrityError))
        stored.check()
        return stored

    def check(self) -> None:
        """StorageIntegrityError unless the record's invariants hold (by default it has
        none beyond its fields')."""


# --- device identity and class --------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo(StoredRecord):
    """What this device is: the vendor and class it accepts images for."""

    vendor_name: str
    class_name: str
    vendor_id: uuid.UUID
    class_id: uuid.UUID

    SCHEMA: ClassVar[Schema] = _schema(
        RECORD_DEVICE, Field("vendor", TEXT, name="vendor_name"),
        Field("class", TEXT, name="class_name"), Field("vendor-id", UUID, name="vendor_id"),
        Field("class-id", UUID, name="class_id"))

    @classmethod
    def named(cls, vendor: str, klass: str) -> DeviceInfo:
        """A device of that vendor and class (their UUIDs derived as sfu sign derives them)."""
        vendor_id = vendor_uuid(vendor)
        return cls(vendor, klass, vendor_id, class_uuid(vendor_id, klass))



# --- trust anchors --------------------------------------------------------------------------


class Role(enum.Enum):
    FIRMWARE = "firmware"  # signs SFUIs
    OPERATOR = "operator"  # signs remote commands and integrity policies
    RECOVERY = "recovery"  # signs images accepted while the device is quarantined


def _public_key(der: bytes) -> TrustedKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):  # an unknown key type's OID
        raise StorageIntegrityError("secure storage holds an unreadable trust anchor") from None
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return TrustedKey(key)
    raise StorageIntegrityError("secure storage holds a trust anchor of an unsupported type")


@dataclass(frozen=True)
class TrustAnchor:
    """One trusted public key with its role. `revoked` anchors are kept (so a revocation is
    itself protected against rollback by the storage counter) but never trusted."""

    role: Role
    spki: bytes  # SubjectPublicKeyInfo DER
    revoked: bool = False

    @property
    def key(self) -> TrustedKey:
        return _public_key(self.spki)

    @property
    def kid(self) -> bytes:
        return self.key.kid

    @classmethod
    def from_key(cls, role: Role, key: TrustedKey) -> TrustAnchor:
        der = key.public_key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(role, der)


_ANCHOR: Final = Schema("anchor", Field("role", enum_of(Role)), Field("spki", blob()),
                        Field("revoked", BOOL), extra=True)


#: Anchors one role may hold at most (active and revoked), and so the highest threshold.
MAX_ANCHORS: Final = 16

_THRESHOLDS: Final = converted(
    list_of(tuple_of(enum_of(Role), integer(1, MAX_ANCHORS)), len(Role)),
    lambda pairs: tuple(sorted(pairs, key=lambda pair: pair[0].value)), list)


@dataclass(frozen=True)
class TrustStore(StoredRecord):
    """All trust anchors, several per role, and per role a threshold k: how many DISTINCT
    active anchors of the role must sign (1 for a role not listed). `version` is raised by
    every signed change (a revoke-key command, a trust update) and never goes down."""

    anchors: tuple[TrustAnchor, ...]
    version: int = 1
    thresholds: tuple[tuple[Role, int], ...] | None = None  # (role, k) for roles set so far

    def keys(self, role: Role) -> list[TrustedKey]:
        """The active (not revoked) keys of a role."""
        return [a.key for a in self.anchors if a.role is role and not a.revoked]

    def threshold(self, role: Role) -> int:
        """How many distinct active anchors of `role` must sign."""
        return dict(self.thresholds or ()).get(role, 1)

    def count_signers(self, role: Role, kids: Sequence[bytes]) -> int:
        """How many distinct active anchors of `role` are among the key IDs `kids`."""
        return len({kid for kid in kids if self.active(role, kid) is not None})

    def active(self, role: Role, kid: bytes) -> TrustAnchor | None:
        """The active anchor of `role` with key ID `kid`, if there is one."""
        for anchor in self.anchors:
            if anchor.role is role and not anchor.revoked and anchor.kid == kid:
                return anchor
        return None

    def boot_anchor(self, kid: bytes) -> TrustAnchor | None:
        """The active firmware or recovery anchor with key ID `kid` (a bootable signer)."""
        return self.active(Role.FIRMWARE, kid) or self.active(Role.RECOVERY, kid)

    def revoke(self, role: Role, kid: bytes) -> TrustStore:
        """A new store (version + 1) with that anchor marked revoked; KeyError if absent."""
        if self.active(role, kid) is None:
            raise KeyError(kid)
        anchors = tuple(replace(a, revoked=True) if a.role is role and a.kid == kid else a
                        for a in self.anchors)
        return replace(self, anchors=anchors, version=self.version + 1)

    def short_of_threshold(self) -> list[str]:
        """The roles with active anchors but fewer than their threshold, described (such a
        threshold can never be met: the role would be unusable)."""
        return [f"{role.value} needs {self.threshold(role)} signatures but has "
                f"{len(self.keys(role))} active anchors" for role in Role
                if 0 < len(self.keys(role)) < self.threshold(role)]

    SCHEMA: ClassVar[Schema] = _schema(
        RECORD_TRUST, Field("version", INT),
        Field("anchors", list_of(record(_ANCHOR, TrustAnchor))),
        Field("thresholds", _THRESHOLDS, optional=True))

    def check(self) -> None:
        """Every anchor's key parses (fail at load, not at first use); one threshold a
        role."""
        for anchor in self.anchors:
            anchor.key  # noqa: B018
        roles = [role for role, _ in self.thresholds or ()]
        if len(set(roles)) != len(roles):
            raise StorageIntegrityError("secure storage record trust names a role's "
                                        "threshold twice")


# --- boot control and the rollback floor ----------------------------------------------------


class SlotStatus(enum.Enum):
    EMPTY = "empty"  # never written
    INVALID = "invalid"  # being written, or a write failed: never boots
    TRIAL = "trial"  # a complete, verified image on trial (boots while tries are left)
    CONFIRMED = "confirmed"  # the confirmed image (exactly one slot)
    SUPERSEDED = "superseded"  # an older confirmed image, now below the floor: never boots
    BAD = "bad"  # failed its trial: never boots


@dataclass(frozen=True)
class ComponentRecord:
    """The facts of one component of a set: what the agent authenticated about its image when
    the SFUI that installed it (`sequence`, signed by `signer`) was installed. A component the
    set's SFUI did not name keeps the record it had on the confirmed side."""

    name: str
    sequence: int
    digest: bytes  # SHA-256 of the component's image (its region's first `size` bytes)
    size: int
    signer: bytes

    def encode_facts(self) -> list[Any]:
        return [self.name, self.sequence, self.digest, self.size, self.signer]


_COMPONENT: Final = Schema("component", Field("name", TEXT), Field("sequence", INT),
                           Field("digest", DIGEST), Field("size", INT),
                           Field("signer", DIGEST), extra=True)


def set_digest(components: Sequence[ComponentRecord]) -> bytes:
    """The digest that stands for a set of components (measured at boot, attested): SHA-256
    of the CBOR array of each one's [name, sequence, digest, size, signer]."""
    return hashlib.sha256(cbor.dumps([c.encode_facts() for c in components])).digest()


@dataclass(frozen=True)
class ImageRecord:
    """The facts the agent established when it authenticated the image in a slot, recorded in
    the same atomic write that made the slot a trial. Every later decision (boot, confirm,
    revoke, quarantine, revert) reads these, never the slot's stored header (slot storage is
    the Rich OS's to write).

    On a board of several components the image is a set: `components` holds every
    component's facts, `digest` is their `set_digest` and `size` their total; `sequence`,
    `signer` and `version` are those of the SFUI that made the set."""

    sequence: int
    digest: bytes  # SHA-256 of the image (the slot's first `size` bytes)
    size: int
    signer: bytes  # key ID (SHA-256 of the SPKI) of the trust anchor whose signature verified
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    version: str | None = None
    components: tuple[ComponentRecord, ...] | None = None

    @classmethod
    def of_set(cls, sequence: int, components: Sequence[ComponentRecord], signer: bytes,
               vendor_id: uuid.UUID, class_id: uuid.UUID, version: str | None) -> ImageRecord:
        return cls(sequence, set_digest(components), sum(c.size for c in components), signer,
                   vendor_id, class_id, version, tuple(components))

    def signers(self) -> list[bytes]:
        """Every key that signed a part of this image (the set's signer first)."""
        found = [self.signer]
        for component in self.components or ():
            if component.signer not in found:
                found.append(component.signer)
        return found

    def consistent(self) -> bool:
        """A set's digest and size are its components'; names are unique; the components
        the set's SFUI named carry its signer, the others come from an older SFUI."""
        parts = self.components
        if parts is None:
            return True
        return (bool(parts) and len({c.name for c in parts}) == len(parts)
                and self.digest == set_digest(parts) and self.size == sum(c.size for c in parts)
                and all(c.sequence < self.sequence or (c.sequence == self.sequence
                                                       and c.signer == self.signer)
                        for c in parts))


_IMAGE: Final = Schema("image", Field("sequence", INT), Field("digest", DIGEST),
                       Field("size", INT), Field("signer", DIGEST),
                       Field("vendor-id", UUID, name="vendor_id"),
                       Field("class-id", UUID, name="class_id"),
                       Field("version", nullable(TEXT), optional=True),
                       Field("components", nullable(list_of(record(_COMPONENT, ComponentRecord),
                                                            16, min_items=1)), optional=True),
                       extra=True)


@dataclass(frozen=True)
class SlotRecord:
    status: SlotStatus
    image: ImageRecord | None = None


_SLOT: Final = Schema("slot", Field("status", enum_of(SlotStatus)),
                      Field("image", nullable(record(_IMAGE, ImageRecord)), optional=True),
                      extra=True)


@dataclass(frozen=True)
class BootRecord(StoredRecord):
    """Boot control and the rollback floor, written as ONE record so every transition is
    one atomic storage write. Change it only through `sfupdate.secure.kernel.Kernel`.

    `booted` is the slot the last boot started (the running image). `trial_healthy` says the
    boot code started the trial since it was recorded and the trial passed its health check:
    only then may it be confirmed."""

    slots: tuple[SlotRecord, SlotRecord]  # A, B
    confirmed: Slot
    trial: Slot | None
    tries_left: int
    floor: int
    booted: Slot | None = None
    trial_healthy: bool = False

    def slot(self, slot: Slot) -> SlotRecord:
        return self.slots[0 if slot is Slot.A else 1]

    def with_slot(self, slot: Slot, record: SlotRecord) -> BootRecord:
        slots = (record, self.slots[1]) if slot is Slot.A else (self.slots[0], record)
        return replace(self, slots=slots)

    @property
    def running(self) -> Slot:
        """The slot the last boot started; the confirmed one before any boot."""
        return self.booted or self.confirmed

    @property
    def confirmed_image(self) -> ImageRecord:
        image = self.slot(self.confirmed).image
        assert image is not None  # decode() guarantees it
        return image

    @property
    def trial_image(self) -> ImageRecord | None:
        return None if self.trial is None else self.slot(self.trial).image

    SCHEMA: ClassVar[Schema] = _schema(
        RECORD_BOOT, Field("slots", list_of(record(_SLOT, SlotRecord), 2, min_items=2)),
        Field("confirmed", enum_of(Slot)), Field("trial", nullable(enum_of(Slot))),
        Field("tries-left", INT, name="tries_left"), Field("floor", INT),
        Field("booted", nullable(enum_of(Slot))),
        Field("trial-healthy", BOOL, name="trial_healthy"))


    def check(self) -> None:
        """The invariants every stored boot record satisfies (StorageIntegrityError)."""
        confirmed = self.slot(self.confirmed)
        trial = self.trial_image
        ok = (confirmed.status is SlotStatus.CONFIRMED and confirmed.image is not None
              and self.slot(self.confirmed.other).status is not SlotStatus.CONFIRMED
              and (self.trial is None) == (self.slot(self.confirmed.other).status
                                           is not SlotStatus.TRIAL)
              and self.trial is not self.confirmed and self.tries_left >= 0
              and confirmed.image.sequence >= self.floor >= 0
              and (self.trial is None or (trial is not None and trial.sequence > self.floor))
              and (self.trial is not None or self.tries_left == 0)
              and (not self.trial_healthy or (self.trial is not None
                                              and self.booted is self.trial))
              and all(s.image is None or s.image.consistent() for s in self.slots))
        if not ok:
            raise StorageIntegrityError("secure storage record boot is inconsistent")


# --- the agent bundle's own A/B partitions and anti-rollback ---------------------------------


@dataclass(frozen=True)
class BundleRecord:
    """What was verified about the bundle in an agent partition: its SUIT sequence number and
    the digest of its payload (the zipapp the ROM runs)."""

    sequence: int
    digest: bytes


_BUNDLE: Final = Schema("bundle", Field("sequence", INT), Field("digest", DIGEST), extra=True)


@dataclass(frozen=True)
class AgentRecord(StoredRecord):
    """The agent's boot control: the partition whose bundle is confirmed (`active`), a new
    bundle on trial (run once by the ROM: `tried`, then confirmed by itself or dropped), and
    the agent's own rollback floor (never goes down)."""

    bundles: tuple[BundleRecord | None, BundleRecord | None]  # A, B (None: empty or invalid)
    active: Slot
    floor: int
    trial: Slot | None = None
    tried: bool = False

    def bundle(self, slot: Slot) -> BundleRecord | None:
        return self.bundles[0 if slot is Slot.A else 1]

    def with_bundle(self, slot: Slot, bundle: BundleRecord | None) -> AgentRecord:
        bundles = (bundle, self.bundles[1]) if slot is Slot.A else (self.bundles[0], bundle)
        return replace(self, bundles=bundles)

    @property
    def active_bundle(self) -> BundleRecord:
        bundle = self.bundle(self.active)
        assert bundle is not None  # check()
        return bundle

    def check(self) -> None:
        active = self.bundle(self.active)
        trial = None if self.trial is None else self.bundle(self.trial)
        ok = (active is not None and active.sequence >= self.floor >= 0
              and self.trial is not self.active
              and (self.trial is None or (trial is not None and trial.sequence > self.floor))
              and (self.trial is not None or not self.tried))
        if not ok:
            raise StorageIntegrityError("secure storage record agent is inconsistent")

    SCHEMA: ClassVar[Schema] = _schema(
        RECORD_AGENT,
        Field("bundles", list_of(nullable(record(_BUNDLE, BundleRecord)), 2, min_items=2)),
        Field("active", enum_of(Slot)), Field("floor", INT),
        Field("trial", nullable(enum_of(Slot))), Field("tried", BOOL))



def initial_agent_record(bundle: BundleRecord) -> AgentRecord:
    """Provisioning: the bundle in partition A, confirmed, its sequence the agent floor."""
    return AgentRecord((bundle, None), Slot.A, bundle.sequence)


def initial_boot_record(image: ImageRecord) -> BootRecord:
    """Provisioning: the initial image confirmed in slot A, floor at its sequence number."""
    return BootRecord((SlotRecord(SlotStatus.CONFIRMED, image), SlotRecord(SlotStatus.EMPTY)),
                      confirmed=Slot.A, trial=None, tries_left=0, floor=image.sequence,
                      booted=None)


def anchors_for(role: Role, keys: Sequence[TrustedKey]) -> tuple[TrustAnchor, ...]:
    return tuple(TrustAnchor.from_key(role, k) for k in keys)


# --- after an attack: remote commands, the event log, the integrity policy -----------------


@dataclass(frozen=True)
class RemoteState(StoredRecord):
    """Remote-command state. `last_command` only rises: a signed command is spent once the
    agent verified it, whether its action then succeeded or was refused for the device state.
    `quarantine` is the key ID of the recovery anchor that alone may sign images while the
    device is quarantined, or None. `time_floor` (seconds since the epoch) only rises: the
    latest signed issue time the agent verified; no expiry is judged by a clock below it."""

    last_command: int = 0
    quarantine: bytes | None = None
    time_floor: int = 0

    SCHEMA: ClassVar[Schema] = _schema(
        RECORD_REMOTE, Field("last-command", INT, name="last_command"),
        Field("quarantine", nullable(DIGEST)), Field("time-floor", INT, name="time_floor"))



#: Unpinned events kept (the newest); pinned ones are kept apart until acknowledged.
EVENT_RING_CAPACITY: Final = 32
#: Pinned events kept at most. Operator events may fill all but TAMPER_RESERVE of them, so the
#: first mismatch of every region a policy can name (MAX_REGIONS + running slot + agent
#: bundle) always finds room.
PINNED_CAPACITY: Final = 64
TAMPER_RESERVE: Final = 34
MAX_EVENT_TEXT: Final = 160
#: Event kinds that record what the operator did or what changed the keys: always pinned.
OPERATOR_KINDS: Final = frozenset({"command", "command-refused", "policy-installed",
                                   "revert", "key-revoked", "trust-updated"})
#: Event kinds whose first occurrence per subject is pinned (tamper findings).
TAMPER_KINDS: Final = frozenset({"integrity-mismatch"})


@dataclass(frozen=True)
class Event:
    """One security event. `number` counts every distinct event ever logged (from 1); an
    identical event (same kind, subject and detail) logged again raises `count` and `last`
    instead of taking a new number."""

    number: int
    first: int  # seconds since the epoch, by the agent's clock, of the first occurrence
    last: int  # ... and of the latest
    count: int
    kind: str  # integrity-mismatch, revert, command, command-refused, policy-installed...
    subject: str  # the region checked, or the remote action
    detail: str
    pinned: bool = False

    def same(self, kind: str, subject: str, detail: str) -> bool:
        return (self.kind, self.subject, self.detail) == (kind, subject, detail)

    @classmethod
    def stored(cls, **fields: Any) -> Event:
        """An event read from secure storage, checked (StorageIntegrityError)."""
        event = cls(**fields)
        if event.count < 1 or event.last < event.first:
            raise StorageIntegrityError(f"secure storage record events: bad event {event.number}")
        return event


_EVENT: Final = Schema("event", Field("n", INT, name="number"), Field("first", INT),
                       Field("last", INT), Field("count", INT), Field("kind", TEXT),
                       Field("subject", TEXT), Field("detail", TEXT), Field("pinned", BOOL),
                       extra=True)


@dataclass(frozen=True)
class EventLog(StoredRecord):
    """The security event log: pinned events (what the operator did, key changes, the first
    mismatch of each region) kept until a signed `acknowledge` command releases them, and a
    ring of the newest EVENT_RING_CAPACITY other events. Repeats coalesce, so nothing the Rich
    OS can make the agent log repeatedly flushes a pinned event out (docs/after-attack.md).
    Replay-protected because secure storage is: an old copy put back is detected."""

    total: int = 0
    events: tuple[Event, ...] = ()  # pinned and ring events, in number order
    acknowledged: int = 0  # the highest event number the operator acknowledged

    @property
    def pinned(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.pinned)

    def operator_room(self) -> bool:
        """Whether another operator event can be pinned (else: acknowledge first)."""
        return len(self.pinned) < PINNED_CAPACITY - TAMPER_RESERVE

    def append(self, time: int, kind: str, subject: str, detail: str) -> EventLog:
        kind, subject, detail = (kind[:MAX_EVENT_TEXT], subject[:MAX_EVENT_TEXT],
                                 detail[:MAX_EVENT_TEXT])
        for i, event in enumerate(self.events):
            if event.same(kind, subject, detail):
                again = replace(event, last=max(event.last, time), count=event.count + 1)
                return replace(self, events=(*self.events[:i], again, *self.events[i + 1:]))
        pinned = self.pinned
        pin = (kind in OPERATOR_KINDS and len(pinned) < PINNED_CAPACITY) or (
            kind in TAMPER_KINDS and len(pinned) < PINNED_CAPACITY
            and not any(e.kind == kind and e.subject == subject for e in pinned))
        event = Event(self.total + 1, time, time, 1, kind, subject, detail, pin)
        ring = [e for e in self.events if not e.pinned]
        if not pin:
            ring = [*ring, event][-EVENT_RING_CAPACITY:]
        kept = [*pinned, event] if pin else list(pinned)
        events = tuple(sorted(kept + ring, key=lambda e: e.number))
        return replace(self, total=self.total + 1, events=events)

    def acknowledge(self, through: int) -> EventLog:
        """Unpin every event numbered up to `through` (it then ages out with the ring)."""
        if through > self.total:
            raise DeviceStateError(f"event {through} was never logged (the last is "
                                   f"{self.total})")
        released = [replace(e, pinned=False) if e.number <= through else e
                    for e in self.events]
        ring = [e for e in released if not e.pinned][-EVENT_RING_CAPACITY:]
        events = tuple(sorted([e for e in released if e.pinned] + ring,
                              key=lambda e: e.number))
        return replace(self, events=events, acknowledged=max(self.acknowledged, through))

    SCHEMA: ClassVar[Schema] = _schema(
        RECORD_EVENTS, Field("total", INT), Field("events", list_of(record(_EVENT, Event.stored))),
        Field("acknowledged", INT))

    def check(self) -> None:
        numbers = [e.number for e in self.events]
        if (sum(e.pinned for e in self.events) > PINNED_CAPACITY
                or sum(not e.pinned for e in self.events) > EVENT_RING_CAPACITY
                or numbers != sorted(set(numbers))
                or any(not 1 <= n <= self.total for n in numbers)):
            raise StorageIntegrityError("secure storage record events is inconsistent")


@dataclass(frozen=True)
class BootMeasurement:
    """One measured-boot event: the stage, the digest it measured, a description."""

    stage: str
    digest: bytes
    description: str


@dataclass(frozen=True)
class MeasuredBoot(StoredRecord):
    """What the boot code measured during the current boot, kept in secure storage where the
    Rich OS cannot write: a hash chain like a TPM PCR (pcr := SHA-256(pcr || digest))."""

    pcr: bytes = bytes(32)
    events: tuple[BootMeasurement, ...] = ()

    MAX_EVENTS: ClassVar[int] = 8

    def extend(self, stage: str, digest: bytes, description: str) -> MeasuredBoot:
        if len(self.events) >= self.MAX_EVENTS:
            raise StorageIntegrityError("the measured boot log is full")
        pcr = hashlib.sha256(self.pcr + digest).digest()
        event = BootMeasurement(stage, digest, description[:MAX_EVENT_TEXT])
        return MeasuredBoot(pcr, (*self.events, event))

    def digests(self, stage: str) -> list[bytes]:
        return [e.digest for e in self.events if e.stage == stage]

    SCHEMA: ClassVar[Schema] = _schema(
        RECORD_MEASURED, Field("pcr", blob()),
        Field("events", list_of(record(Schema("measurement", Field("stage", TEXT),
                                              Field("digest", DIGEST),
                                              Field("description", TEXT), extra=True),
                                       BootMeasurement))))

    def check(self) -> None:
        """Replaying the events (at most MAX_EVENTS) must give the stored PCR."""
        replayed = MeasuredBoot()
        for event in self.events:
            replayed = replayed.extend(event.stage, event.digest, event.description)
        if replayed.pcr != self.pcr:
            raise StorageIntegrityError("secure storage record measured-boot is inconsistent")


@dataclass(frozen=True)
class PolicyRecord(StoredRecord):
    """The installed integrity policy: its sequence number and its signed body (the CBOR
    the operator signed, kept as is; the agent verified the signature before storing it)."""

    sequence: int
    body: bytes

    SCHEMA: ClassVar[Schema] = _schema(RECORD_POLICY, Field("sequence", INT),
                                       Field("body", blob()))

