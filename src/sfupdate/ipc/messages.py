"""Message types and their strict schemas.

Requests carry `op`, replies carry `reply`. Each type has exactly the keys listed in its
schema: an unknown key, a missing key, a value of the wrong type or an unknown op is an
`IpcError`. Decoding goes from the dict `Connection.recv` returns to a frozen dataclass;
encoding the other way. Nothing here trusts the peer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from sfupdate import errors
from sfupdate.errors import IpcError, SfuError
from sfupdate.ipc.framing import MAX_CHUNK, Connection, decode_map
from sfupdate.sfui import cbor

UINT64_MAX: Final = 2**64 - 1
MAX_TEXT: Final = 1024
SLOT_NAMES: Final = ("A", "B")
SLOT_STATES: Final = ("confirmed", "trial", "invalid", "empty", "bad", "superseded")

_UUID_RE: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_ERROR_NAME_RE: Final = re.compile(r"^[A-Z][A-Za-z]{0,63}Error$")
#: Signed objects the client carries to the agent (remote/commands.py, remote/policy.py).
MAX_COMMAND: Final = 16 * 1024
MAX_POLICY: Final = 32 * 1024
MAX_TOKEN: Final = 64 * 1024
MIN_NONCE, MAX_NONCE = 8, 64  # RFC 9711 nonce sizes
REGION_RESULTS: Final = ("ok", "mismatch", "absent")
REGION_ACTIONS: Final = ("none", "reported", "reverted", "revert-refused")
MAX_RESULTS: Final = 64
MAX_EVENTS: Final = 128

Check = Callable[[Any], bool]


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _chunk(value: Any) -> bool:
    return isinstance(value, bytes) and 0 < len(value) <= MAX_CHUNK


def _bytes(low: int, high: int) -> Check:
    return lambda value: isinstance(value, bytes) and low <= len(value) <= high


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _matches(pattern: re.Pattern[str]) -> Check:
    return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None


def _one_of(*choices: str) -> Check:
    return lambda value: isinstance(value, str) and value in choices


def _fields(obj: Mapping[str, Any], schema: Mapping[str, Check], what: str) -> None:
    """Exactly the schema's keys, each passing its check."""
    for key in obj:
        if key not in schema:
            raise IpcError(f"{what}: unknown key {key!r}"[:200])
    for key, check in schema.items():
        if key not in obj:
            raise IpcError(f"{what}: missing key {key!r}")
        if not check(obj[key]):
            raise IpcError(f"{what}: key {key!r} has the wrong type or value")


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRequest:
    op: ClassVar[str] = "status"


@dataclass(frozen=True)
class InstallBegin:
    """Opens an install session. `size` is the SFUI's total length if the client knows it;
    the agent then refuses more bytes than that."""

    size: int | None
    op: ClassVar[str] = "install-begin"


@dataclass(frozen=True)
class Chunk:
    """The next bytes of the SFUI. Chunks get no reply; the agent answers only at the end
    or as soon as it refuses the install."""

    data: bytes
    op: ClassVar[str] = "chunk"


@dataclass(frozen=True)
class InstallEnd:
    op: ClassVar[str] = "install-end"


@dataclass(frozen=True)
class ConfirmRequest:
    op: ClassVar[str] = "confirm"


@dataclass(frozen=True)
class RejectTrialRequest:
    op: ClassVar[str] = "reject-trial"


@dataclass(frozen=True)
class CheckRequest:
    """Re-measure the running slot, the agent bundle and the policy's regions now."""

    op: ClassVar[str] = "check"


@dataclass(frozen=True)
class AttestRequest:
    """An attestation token (EAT) answering `nonce` (8 to 64 bytes)."""

    nonce: bytes
    op: ClassVar[str] = "attest"


@dataclass(frozen=True)
class PolicyInstallRequest:
    """A signed integrity policy (COSE_Sign1) to install."""

    policy: bytes
    op: ClassVar[str] = "policy-install"


@dataclass(frozen=True)
class RemoteRequest:
    """A signed remote command (COSE_Sign1), carried as is from the operator."""

    command: bytes
    op: ClassVar[str] = "remote"


@dataclass(frozen=True)
class AuditRequest:
    """The remote-command state, the integrity policy in force and the event log."""

    op: ClassVar[str] = "audit"


Request = (StatusRequest | InstallBegin | Chunk | InstallEnd | ConfirmRequest
           | RejectTrialRequest | CheckRequest | AttestRequest | PolicyInstallRequest
           | RemoteRequest | AuditRequest)

_REQUEST_SCHEMAS: Final[dict[str, dict[str, Check]]] = {
    "status": {},
    "install-begin": {"size": _optional(_uint)},
    "chunk": {"data": _chunk},
    "install-end": {},
    "confirm": {},
    "reject-trial": {},
    "check": {},
    "attest": {"nonce": _bytes(MIN_NONCE, MAX_NONCE)},
    "policy-install": {"policy": _bytes(1, MAX_POLICY)},
    "remote": {"command": _bytes(1, MAX_COMMAND)},
    "audit": {},
}


#: The deterministic encoding of {"op": "chunk", "data": ...} up to the data's bstr head
#: (keys sort bytewise by their encoding, so "op" comes first and the data ends the frame).
_CHUNK_PREFIX: Final = cbor.dumps({"op": "chunk", "data": b""})[:-1]


def chunk_frame(*pieces: bytes) -> list[bytes]:
    """A chunk message whose data is the concatenation of `pieces`, as parts (prefix, then the
    pieces): byte for byte `cbor.dumps` of it, without copying the data."""
    return [_CHUNK_PREFIX + cbor.encode_head(cbor.MAJOR_BSTR, sum(map(len, pieces))), *pieces]


def _chunk_data(body: memoryview) -> bytes | None:
    """The data of a chunk message in its one deterministic encoding, else None (the strict
    generic decoder then judges the body)."""
    start = len(_CHUNK_PREFIX)
    if len(body) <= start + 1 or body[:start] != _CHUNK_PREFIX:
        return None
    n = len(body) - start
    for head_len in (1, 2, 3, 5, 9):
        length = n - head_len
        if length > 0 and cbor.encode_head(cbor.MAJOR_BSTR, length) == body[start:start + head_len]:
            return bytes(body[start + head_len:]) if length <= MAX_CHUNK else None
    return None


def read_request(conn: Connection, timeout: float | None = None) -> Request:
    """Receive and strictly decode one request; chunks take a fast path that accepts exactly
    the encoding the generic decoder would accept for them."""
    body = conn.recv_body(timeout)
    data = _chunk_data(body)
    if data is not None:
        return Chunk(data)
    return decode_request(decode_map(body))


def encode_request(request: Request) -> dict[str, Any]:
    if isinstance(request, InstallBegin):
        return {"op": request.op, "size": request.size}
    if isinstance(request, Chunk):
        return {"op": request.op, "data": request.data}
    if isinstance(request, AttestRequest):
        return {"op": request.op, "nonce": request.nonce}
    if isinstance(request, PolicyInstallRequest):
        return {"op": request.op, "policy": request.policy}
    if isinstance(request, RemoteRequest):
        return {"op": request.op, "command": request.command}
    return {"op": request.op}


def decode_request(obj: Mapping[str, Any]) -> Request:
    op = obj.get("op")
    if not isinstance(op, str) or op not in _REQUEST_SCHEMAS:
        raise IpcError(f"unknown op {op!r}"[:200])
    schema = {"op": _text, **_REQUEST_SCHEMAS[op]}
    _fields(obj, schema, f"{op} request")
    if op == "install-begin":
        return InstallBegin(obj["size"])
    if op == "chunk":
        return Chunk(obj["data"])
    if op == "attest":
        return AttestRequest(obj["nonce"])
    if op == "policy-install":
        return PolicyInstallRequest(obj["policy"])
    if op == "remote":
        return RemoteRequest(obj["command"])
    simple: dict[str, Request] = {"status": StatusRequest(), "install-end": InstallEnd(),
                                  "confirm": ConfirmRequest(), "reject-trial": RejectTrialRequest(),
                                  "check": CheckRequest(), "audit": AuditRequest()}
    return simple[op]


# --- replies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotStatus:
    state: str
    sequence: int | None
    digest: str | None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "sequence": self.sequence, "digest": self.digest}


_SLOT_SCHEMA: Final[dict[str, Check]] = {
    "state": _one_of(*SLOT_STATES),
    "sequence": _optional(_uint),
    "digest": _optional(_matches(_HEX256_RE)),
}


@dataclass(frozen=True)
class AgentStatus:
    """What the agent reports about the device. `to_json()` is also the wire form."""

    vendor_id: str
    class_id: str
    running_slot: str
    running_sequence: int
    rollback_floor: int
    trial_slot: str | None
    trial_tries_left: int | None
    slots: dict[str, SlotStatus] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor_id": self.vendor_id,
            "class_id": self.class_id,
            "running_slot": self.running_slot,
            "running_sequence": self.running_sequence,
            "rollback_floor": self.rollback_floor,
            "trial_slot": self.trial_slot,
            "trial_tries_left": self.trial_tries_left,
            "slots": {name: slot.to_json() for name, slot in sorted(self.slots.items())},
        }

    @classmethod
    def from_wire(cls, obj: Any) -> AgentStatus:
        if not isinstance(obj, dict):
            raise IpcError("status: not a map")
        _fields(obj, {
            "vendor_id": _matches(_UUID_RE),
            "class_id": _matches(_UUID_RE),
            "running_slot": _one_of(*SLOT_NAMES),
            "running_sequence": _uint,
            "rollback_floor": _uint,
            "trial_slot": _optional(_one_of(*SLOT_NAMES)),
            "trial_tries_left": _optional(_uint),
            "slots": lambda v: isinstance(v, dict) and sorted(v) == sorted(SLOT_NAMES),
        }, "status")
        slots = {}
        for name, slot in obj["slots"].items():
            if not isinstance(slot, dict):
                raise IpcError(f"status: slot {name} is not a map")
            _fields(slot, _SLOT_SCHEMA, f"status of slot {name}")
            slots[name] = SlotStatus(slot["state"], slot["sequence"], slot["digest"])
        return cls(obj["vendor_id"], obj["class_id"], obj["running_slot"],
                   obj["running_sequence"], obj["rollback_floor"], obj["trial_slot"],
                   obj["trial_tries_left"], slots)


@dataclass(frozen=True)
class InstallResult:
    """A completed install: the slot now on trial, its sequence number and image digest."""

    slot: str
    sequence: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "sequence": self.sequence, "digest": self.digest}


@dataclass(frozen=True)
class StatusReply:
    status: AgentStatus
    reply: ClassVar[str] = "status"


@dataclass(frozen=True)
class ReadyReply:
    """The install session is open: the client may stream chunks."""

    reply: ClassVar[str] = "ready"


@dataclass(frozen=True)
class InstalledReply:
    result: InstallResult
    reply: ClassVar[str] = "installed"


@dataclass(frozen=True)
class ErrorReply:
    """A refusal: the name of the `sfupdate.errors` class the agent raised, and its line."""

    error: str
    message: str
    reply: ClassVar[str] = "error"

    @classmethod
    def from_exception(cls, exc: SfuError) -> ErrorReply:
        return cls(type(exc).__name__, str(exc)[:MAX_TEXT])

    def to_exception(self) -> SfuError:
        """The same class the agent raised, looked up by name in sfupdate.errors only."""
        cls = getattr(errors, self.error, None)
        if isinstance(cls, type) and issubclass(cls, SfuError):
            return cls(self.message)
        return IpcError(f"agent reported an unknown error {self.error}: {self.message}")


@dataclass(frozen=True)
class RegionResult:
    """One re-measured region: `result` ok/mismatch/absent; `action` what the agent did."""

    region: str
    result: str
    detail: str
    action: str

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "result": self.result, "detail": self.detail,
                "action": self.action}


_REGION_SCHEMA: Final[dict[str, Check]] = {
    "region": _text, "result": _one_of(*REGION_RESULTS), "detail": _text,
    "action": _one_of(*REGION_ACTIONS),
}


@dataclass(frozen=True)
class IntegrityReport:
    results: tuple[RegionResult, ...]
    events_total: int

    @property
    def intact(self) -> bool:
        return all(r.result == "ok" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"intact": self.intact, "events_total": self.events_total,
                "results": [r.to_json() for r in self.results]}


@dataclass(frozen=True)
class IntegrityReply:
    report: IntegrityReport
    reply: ClassVar[str] = "integrity"


@dataclass(frozen=True)
class TokenReply:
    """An attestation token (COSE_Sign1 EAT, signed by the device identity key)."""

    token: bytes
    reply: ClassVar[str] = "token"


@dataclass(frozen=True)
class PolicyReply:
    sequence: int
    regions: int
    reply: ClassVar[str] = "policy"


@dataclass(frozen=True)
class RemoteResult:
    """What a remote command did; `token` is an attestation of the state after it, whose
    nonce is the command's (inspect) or the SHA-256 of the signed command (other actions)."""

    action: str
    number: int
    message: str
    token: bytes

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "number": self.number, "message": self.message}


@dataclass(frozen=True)
class RemoteReply:
    result: RemoteResult
    reply: ClassVar[str] = "remote"


@dataclass(frozen=True)
class EventEntry:
    """One logged event; `count` occurrences between `first` and `last`; `pinned` until the
    operator acknowledges it."""

    number: int
    first: int
    last: int
    count: int
    kind: str
    subject: str
    detail: str
    pinned: bool

    def to_json(self) -> dict[str, Any]:
        return {"n": self.number, "first": self.first, "last": self.last, "count": self.count,
                "kind": self.kind, "subject": self.subject, "detail": self.detail,
                "pinned": self.pinned}


_EVENT_SCHEMA: Final[dict[str, Check]] = {
    "n": _uint, "first": _uint, "last": _uint, "count": _uint, "kind": _text,
    "subject": _text, "detail": _text, "pinned": lambda v: isinstance(v, bool),
}


@dataclass(frozen=True)
class AuditInfo:
    last_command: int
    quarantine: str | None  # hex key ID of the recovery key, or None
    policy_sequence: int | None
    events_total: int
    acknowledged: int  # the highest event number the operator acknowledged
    time_floor: int
    events: tuple[EventEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {"last_command": self.last_command, "quarantine": self.quarantine,
                "policy_sequence": self.policy_sequence, "events_total": self.events_total,
                "acknowledged": self.acknowledged, "time_floor": self.time_floor,
                "events": [e.to_json() for e in self.events]}


@dataclass(frozen=True)
class AuditReply:
    audit: AuditInfo
    reply: ClassVar[str] = "audit"


Reply = (StatusReply | ReadyReply | InstalledReply | ErrorReply | IntegrityReply | TokenReply
         | PolicyReply | RemoteReply | AuditReply)


def _list_of(schema: Mapping[str, Check], limit: int) -> Check:
    def check(value: Any) -> bool:
        if not isinstance(value, list) or len(value) > limit:
            return False
        for item in value:
            if not isinstance(item, dict):
                return False
            _fields(item, schema, "list item")
        return True
    return check


def encode_reply(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, StatusReply):
        return {"reply": reply.reply, "status": reply.status.to_json()}
    if isinstance(reply, IntegrityReply):
        return {"reply": reply.reply, "events_total": reply.report.events_total,
                "results": [r.to_json() for r in reply.report.results]}
    if isinstance(reply, TokenReply):
        return {"reply": reply.reply, "token": reply.token}
    if isinstance(reply, PolicyReply):
        return {"reply": reply.reply, "sequence": reply.sequence, "regions": reply.regions}
    if isinstance(reply, RemoteReply):
        return {"reply": reply.reply, **reply.result.to_json(), "token": reply.result.token}
    if isinstance(reply, AuditReply):
        return {"reply": reply.reply, **reply.audit.to_json()}
    if isinstance(reply, InstalledReply):
        return {"reply": reply.reply, **reply.result.to_json()}
    if isinstance(reply, ErrorReply):
        return {"reply": reply.reply, "error": reply.error, "message": reply.message}
    return {"reply": reply.reply}


def decode_reply(obj: Mapping[str, Any]) -> Reply:
    kind = obj.get("reply")
    if kind == "status":
        _fields(obj, {"reply": _text, "status": lambda v: isinstance(v, dict)}, "status reply")
        return StatusReply(AgentStatus.from_wire(obj["status"]))
    if kind == "ready":
        _fields(obj, {"reply": _text}, "ready reply")
        return ReadyReply()
    if kind == "installed":
        _fields(obj, {"reply": _text, "slot": _one_of(*SLOT_NAMES), "sequence": _uint,
                      "digest": _matches(_HEX256_RE)}, "installed reply")
        return InstalledReply(InstallResult(obj["slot"], obj["sequence"], obj["digest"]))
    if kind == "error":
        _fields(obj, {"reply": _text, "error": _matches(_ERROR_NAME_RE), "message": _text},
                "error reply")
        return ErrorReply(obj["error"], obj["message"])
    return _decode_security_reply(kind, obj)


def _decode_security_reply(kind: Any, obj: Mapping[str, Any]) -> Reply:
    if kind == "integrity":
        _fields(obj, {"reply": _text, "events_total": _uint,
                      "results": _list_of(_REGION_SCHEMA, MAX_RESULTS)}, "integrity reply")
        results = tuple(RegionResult(r["region"], r["result"], r["detail"], r["action"])
                        for r in obj["results"])
        return IntegrityReply(IntegrityReport(results, obj["events_total"]))
    if kind == "token":
        _fields(obj, {"reply": _text, "token": _bytes(1, MAX_TOKEN)}, "token reply")
        return TokenReply(obj["token"])
    if kind == "policy":
        _fields(obj, {"reply": _text, "sequence": _uint, "regions": _uint}, "policy reply")
        return PolicyReply(obj["sequence"], obj["regions"])
    if kind == "remote":
        _fields(obj, {"reply": _text, "action": _text, "number": _uint, "message": _text,
                      "token": _bytes(1, MAX_TOKEN)}, "remote reply")
        return RemoteReply(RemoteResult(obj["action"], obj["number"], obj["message"],
                                        obj["token"]))
    if kind == "audit":
        _fields(obj, {"reply": _text, "last_command": _uint,
                      "quarantine": _optional(_matches(_HEX256_RE)),
                      "policy_sequence": _optional(_uint), "events_total": _uint,
                      "acknowledged": _uint, "time_floor": _uint,
                      "events": _list_of(_EVENT_SCHEMA, MAX_EVENTS)}, "audit reply")
        events = tuple(EventEntry(e["n"], e["first"], e["last"], e["count"], e["kind"],
                                  e["subject"], e["detail"], e["pinned"])
                       for e in obj["events"])
        return AuditReply(AuditInfo(obj["last_command"], obj["quarantine"],
                                    obj["policy_sequence"], obj["events_total"],
                                    obj["acknowledged"], obj["time_floor"], events))
    raise IpcError(f"unknown reply {kind!r}"[:200])
