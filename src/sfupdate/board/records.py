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
from typing import Any, ClassVar, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sfupdate.board.hal import Slot
from sfupdate.errors import SfuError, StorageIntegrityError
from sfupdate.sfui import TrustedKey, cbor

RECORD_DEVICE: Final = "device"  # DeviceInfo
RECORD_TRUST: Final = "trust"  # TrustStore
RECORD_BOOT: Final = "boot"  # BootRecord: boot control and the rollback floor
RECORD_IDENTITY: Final = "identity"  # the device identity private key, PKCS#8 DER (P-256)
RECORD_REMOTE: Final = "remote"  # RemoteState: last accepted command number, quarantine
RECORD_EVENTS: Final = "events"  # EventLog: integrity mismatches and remote actions (a ring)
RECORD_POLICY: Final = "policy"  # PolicyRecord: the installed signed integrity policy
RECORD_MEASURED: Final = "measured-boot"  # MeasuredBoot: what the boot code measured
RECORD_AGENT: Final = "agent"  # AgentRecord: which agent partition runs, trial, agent floor

DEFAULT_TRIES: Final = 3
FORMAT: Final = 1


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = cbor.loads(data, what)
    except SfuError as exc:
        raise StorageIntegrityError(f"secure storage record {what} is malformed: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise StorageIntegrityError(f"secure storage record {what} has an unknown format")
    return obj


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise StorageIntegrityError(f"secure storage record {what}: bad field {key!r}")
    return value


# --- device identity and class --------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What this device is: the vendor and class it accepts images for."""

    vendor_name: str
    class_name: str
    vendor_id: uuid.UUID
    class_id: uuid.UUID

    def encode(self) -> bytes:
        return cbor.dumps({"format": FORMAT, "vendor": self.vendor_name, "class": self.class_name,
                           "vendor-id": self.vendor_id.bytes, "class-id": self.class_id.bytes})

    @classmethod
    def decode(cls, data: bytes) -> DeviceInfo:
        obj = _load(data, RECORD_DEVICE)
        vendor_id = _get(obj, "vendor-id", bytes, RECORD_DEVICE)
        class_id = _get(obj, "class-id", bytes, RECORD_DEVICE)
        if len(vendor_id) != 16 or len(class_id) != 16:
            raise StorageIntegrityError("secure storage record device: bad UUID")
        return cls(_get(obj, "vendor", str, RECORD_DEVICE), _get(obj, "class", str, RECORD_DEVICE),
                   uuid.UUID(bytes=vendor_id), uuid.UUID(bytes=class_id))


# --- trust anchors --------------------------------------------------------------------------


class Role(enum.Enum):
    FIRMWARE = "firmware"  # signs SFUIs
    OPERATOR = "operator"  # signs remote commands and integrity policies
    RECOVERY = "recovery"  # signs images accepted while the device is quarantined


def _public_key(der: bytes) -> TrustedKey:
    try:
        key = serialization.load_der_public_key(der)
    except ValueError:
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


@dataclass(frozen=True)
class TrustStore:
    """All trust anchors, several per role; `version` is raised by every signed change. No
    k-of-n thresholds yet: one signature by an active anchor of the right role suffices."""

    anchors: tuple[TrustAnchor, ...]
    version: int = 1

    def keys(self, role: Role) -> list[TrustedKey]:
        """The active (not revoked) keys of a role."""
        return [a.key for a in self.anchors if a.role is role and not a.revoked]

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

    def encode(self) -> bytes:
        return cbor.dumps({
            "format": FORMAT,
            "version": self.version,
            "anchors": [{"role": a.role.value, "spki": a.spki, "revoked": a.revoked}
                        for a in self.anchors],
        })

    @classmethod
    def decode(cls, data: bytes) -> TrustStore:
        obj = _load(data, RECORD_TRUST)
        anchors = []
        for item in _get(obj, "anchors", list, RECORD_TRUST):
            if not isinstance(item, dict):
                raise StorageIntegrityError("secure storage record trust: bad anchor")
            try:
                role = Role(item.get("role"))
            except ValueError:
                raise StorageIntegrityError("secure storage record trust: bad role") from None
            anchor = TrustAnchor(role, _get(item, "spki", bytes, RECORD_TRUST),
                                 _get(item, "revoked", bool, RECORD_TRUST))
            anchor.key  # noqa: B018  (parses the key: fail at load, not at first use)
            anchors.append(anchor)
        return cls(tuple(anchors), _get(obj, "version", int, RECORD_TRUST))


# --- boot control and the rollback floor ----------------------------------------------------


class SlotStatus(enum.Enum):
    EMPTY = "empty"  # never written
    INVALID = "invalid"  # being written, or a write failed: never boots
    TRIAL = "trial"  # a complete, verified image on trial (boots while tries are left)
    CONFIRMED = "confirmed"  # the confirmed image (exactly one slot)
    SUPERSEDED = "superseded"  # an older confirmed image, now below the floor: never boots
    BAD = "bad"  # failed its trial: never boots


@dataclass(frozen=True)
class ImageRecord:
    """The facts the agent established when it authenticated the image in a slot, recorded in
    the same atomic write that made the slot a trial. Every later decision (boot, confirm,
    revoke, quarantine, revert) reads these, never the slot's stored header (slot storage is
    the Rich OS's to write)."""

    sequence: int
    digest: bytes  # SHA-256 of the image (the slot's first `size` bytes)
    size: int
    signer: bytes  # key ID (SHA-256 of the SPKI) of the trust anchor whose signature verified
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    version: str | None = None

    def to_cbor(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"sequence": self.sequence, "digest": self.digest,
                               "size": self.size, "signer": self.signer,
                               "vendor-id": self.vendor_id.bytes,
                               "class-id": self.class_id.bytes}
        if self.version is not None:
            obj["version"] = self.version
        return obj

    @classmethod
    def from_cbor(cls, obj: Any) -> ImageRecord:
        if not isinstance(obj, dict):
            raise StorageIntegrityError("secure storage record boot: bad image")
        version = obj.get("version")
        digest = _get(obj, "digest", bytes, RECORD_BOOT)
        signer = _get(obj, "signer", bytes, RECORD_BOOT)
        vendor = _get(obj, "vendor-id", bytes, RECORD_BOOT)
        klass = _get(obj, "class-id", bytes, RECORD_BOOT)
        if (version is not None and not isinstance(version, str)) or len(digest) != 32 \
                or len(signer) != 32 or len(vendor) != 16 or len(klass) != 16:
            raise StorageIntegrityError("secure storage record boot: bad image")
        return cls(_get(obj, "sequence", int, RECORD_BOOT), digest,
                   _get(obj, "size", int, RECORD_BOOT), signer, uuid.UUID(bytes=vendor),
                   uuid.UUID(bytes=klass), version)


@dataclass(frozen=True)
class SlotRecord:
    status: SlotStatus
    image: ImageRecord | None = None


@dataclass(frozen=True)
class BootRecord:
    """Boot control and the rollback floor, written as ONE record so every transition is
    one atomic storage write. Change it only through `sfupdate.kernel.Kernel`.

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

    def encode(self) -> bytes:
        return cbor.dumps({
            "format": FORMAT,
            "slots": [_slot_cbor(s) for s in self.slots],
            "confirmed": self.confirmed.value,
            "trial": self.trial.value if self.trial else None,
            "tries-left": self.tries_left,
            "floor": self.floor,
            "booted": self.booted.value if self.booted else None,
            "trial-healthy": self.trial_healthy,
        })

    @classmethod
    def decode(cls, data: bytes) -> BootRecord:
        obj = _load(data, RECORD_BOOT)
        raw_slots = _get(obj, "slots", list, RECORD_BOOT)
        if len(raw_slots) != 2:
            raise StorageIntegrityError("secure storage record boot: bad slots")
        slots = (_slot_from(raw_slots[0]), _slot_from(raw_slots[1]))
        record = cls(slots, _slot_name(obj.get("confirmed")), _opt_slot(obj.get("trial")),
                     _get(obj, "tries-left", int, RECORD_BOOT),
                     _get(obj, "floor", int, RECORD_BOOT), _opt_slot(obj.get("booted")),
                     _get(obj, "trial-healthy", bool, RECORD_BOOT))
        record.check()
        return record

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
                                              and self.booted is self.trial)))
        if not ok:
            raise StorageIntegrityError("secure storage record boot is inconsistent")


def _slot_cbor(record: SlotRecord) -> dict[str, Any]:
    obj: dict[str, Any] = {"status": record.status.value}
    if record.image is not None:
        obj["image"] = record.image.to_cbor()
    return obj


def _slot_from(obj: Any) -> SlotRecord:
    if not isinstance(obj, dict):
        raise StorageIntegrityError("secure storage record boot: bad slot")
    try:
        status = SlotStatus(obj.get("status"))
    except ValueError:
        raise StorageIntegrityError("secure storage record boot: bad slot status") from None
    image = obj.get("image")
    return SlotRecord(status, ImageRecord.from_cbor(image) if image is not None else None)


def _slot_name(value: Any) -> Slot:
    try:
        return Slot(value)
    except ValueError:
        raise StorageIntegrityError("secure storage record boot: bad slot name") from None


def _opt_slot(value: Any) -> Slot | None:
    return None if value is None else _slot_name(value)


# --- the agent bundle's own A/B partitions and anti-rollback ---------------------------------


@dataclass(frozen=True)
class BundleRecord:
    """What was verified about the bundle in an agent partition: its SUIT sequence number and
    the digest of its payload (the zipapp the ROM runs)."""

    sequence: int
    digest: bytes

    def to_cbor(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "digest": self.digest}

    @classmethod
    def from_cbor(cls, obj: Any) -> BundleRecord:
        if not isinstance(obj, dict):
            raise StorageIntegrityError("secure storage record agent: bad bundle")
        digest = _get(obj, "digest", bytes, RECORD_AGENT)
        if len(digest) != 32:
            raise StorageIntegrityError("secure storage record agent: bad bundle digest")
        return cls(_get(obj, "sequence", int, RECORD_AGENT), digest)


@dataclass(frozen=True)
class AgentRecord:
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

    def encode(self) -> bytes:
        return cbor.dumps({"format": FORMAT,
                           "bundles": [None if b is None else b.to_cbor() for b in self.bundles],
                           "active": self.active.value, "floor": self.floor,
                           "trial": self.trial.value if self.trial else None,
                           "tried": self.tried})

    @classmethod
    def decode(cls, data: bytes) -> AgentRecord:
        obj = _load(data, RECORD_AGENT)
        raw = _get(obj, "bundles", list, RECORD_AGENT)
        if len(raw) != 2:
            raise StorageIntegrityError("secure storage record agent: bad bundles")
        bundles = (None if raw[0] is None else BundleRecord.from_cbor(raw[0]),
                   None if raw[1] is None else BundleRecord.from_cbor(raw[1]))
        record = cls(bundles, _slot_name(obj.get("active")), _get(obj, "floor", int, RECORD_AGENT),
                     _opt_slot(obj.get("trial")), _get(obj, "tried", bool, RECORD_AGENT))
        record.check()
        return record


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
class RemoteState:
    """Remote-command state. `last_command` only rises: a signed command is spent once the
    agent verified it, whether its action then succeeded or was refused for the device state.
    `quarantine` is the key ID of the recovery anchor that alone may sign images while the
    device is quarantined, or None. `time_floor` (seconds since the epoch) only rises: the
    latest signed issue time the agent verified; no expiry is judged by a clock below it."""

    last_command: int = 0
    quarantine: bytes | None = None
    time_floor: int = 0

    def encode(self) -> bytes:
        return cbor.dumps({"format": FORMAT, "last-command": self.last_command,
                           "quarantine": self.quarantine, "time-floor": self.time_floor})

    @classmethod
    def decode(cls, data: bytes) -> RemoteState:
        obj = _load(data, RECORD_REMOTE)
        quarantine = obj.get("quarantine")
        if quarantine is not None and (not isinstance(quarantine, bytes)
                                       or len(quarantine) != 32):
            raise StorageIntegrityError("secure storage record remote: bad quarantine key ID")
        return cls(_get(obj, "last-command", int, RECORD_REMOTE), quarantine,
                   _get(obj, "time-floor", int, RECORD_REMOTE))


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
                                   "revert", "key-revoked"})
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

    def to_cbor(self) -> dict[str, Any]:
        return {"n": self.number, "first": self.first, "last": self.last, "count": self.count,
                "kind": self.kind, "subject": self.subject, "detail": self.detail,
                "pinned": self.pinned}

    @classmethod
    def from_cbor(cls, obj: Any) -> Event:
        if not isinstance(obj, dict):
            raise StorageIntegrityError("secure storage record events: bad event")
        def number(key: str) -> int:
            return int(_get(obj, key, int, RECORD_EVENTS))

        def text(key: str) -> str:
            return str(_get(obj, key, str, RECORD_EVENTS))

        event = cls(number("n"), number("first"), number("last"), number("count"),
                    text("kind"), text("subject"), text("detail"),
                    _get(obj, "pinned", bool, RECORD_EVENTS))
        if event.count < 1 or event.last < event.first:
            raise StorageIntegrityError("secure storage record events: bad event")
        return event


@dataclass(frozen=True)
class EventLog:
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
            raise ValueError(f"event {through} was never logged (the last is {self.total})")
        released = [replace(e, pinned=False) if e.number <= through else e
                    for e in self.events]
        ring = [e for e in released if not e.pinned][-EVENT_RING_CAPACITY:]
        events = tuple(sorted([e for e in released if e.pinned] + ring,
                              key=lambda e: e.number))
        return replace(self, events=events, acknowledged=max(self.acknowledged, through))

    def encode(self) -> bytes:
        return cbor.dumps({"format": FORMAT, "total": self.total,
                           "acknowledged": self.acknowledged,
                           "events": [e.to_cbor() for e in self.events]})

    @classmethod
    def decode(cls, data: bytes) -> EventLog:
        obj = _load(data, RECORD_EVENTS)
        events = tuple(Event.from_cbor(e) for e in _get(obj, "events", list, RECORD_EVENTS))
        total = _get(obj, "total", int, RECORD_EVENTS)
        numbers = [e.number for e in events]
        if (sum(e.pinned for e in events) > PINNED_CAPACITY
                or sum(not e.pinned for e in events) > EVENT_RING_CAPACITY
                or numbers != sorted(set(numbers)) or any(not 1 <= n <= total for n in numbers)):
            raise StorageIntegrityError("secure storage record events is inconsistent")
        return cls(total, events, _get(obj, "acknowledged", int, RECORD_EVENTS))


@dataclass(frozen=True)
class BootMeasurement:
    """One measured-boot event: the stage, the digest it measured, a description."""

    stage: str
    digest: bytes
    description: str


@dataclass(frozen=True)
class MeasuredBoot:
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

    def encode(self) -> bytes:
        return cbor.dumps({"format": FORMAT, "pcr": self.pcr,
                           "events": [{"stage": e.stage, "digest": e.digest,
                                       "description": e.description} for e in self.events]})

    @classmethod
    def decode(cls, data: bytes) -> MeasuredBoot:
        obj = _load(data, RECORD_MEASURED)
        log = MeasuredBoot()
        for item in _get(obj, "events", list, RECORD_MEASURED):
            if not isinstance(item, dict):
                raise StorageIntegrityError("secure storage record measured-boot: bad event")
            digest = _get(item, "digest", bytes, RECORD_MEASURED)
            if len(digest) != 32:
                raise StorageIntegrityError("secure storage record measured-boot: bad digest")
            log = log.extend(_get(item, "stage", str, RECORD_MEASURED), digest,
                             _get(item, "description", str, RECORD_MEASURED))
        if log.pcr != _get(obj, "pcr", bytes, RECORD_MEASURED):
            raise StorageIntegrityError("secure storage record measured-boot is inconsistent")
        return log


@dataclass(frozen=True)
class PolicyRecord:
    """The installed integrity policy: its sequence number and its signed body (the CBOR
    the operator signed, kept as is; the agent verified the signature before storing it)."""

    sequence: int
    body: bytes

    def encode(self) -> bytes:
        return cbor.dumps({"format": FORMAT, "sequence": self.sequence, "body": self.body})

    @classmethod
    def decode(cls, data: bytes) -> PolicyRecord:
        obj = _load(data, RECORD_POLICY)
        return cls(_get(obj, "sequence", int, RECORD_POLICY), _get(obj, "body", bytes,
                                                                  RECORD_POLICY))
