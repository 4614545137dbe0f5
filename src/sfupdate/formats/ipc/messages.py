"""Message types: each a frozen dataclass that declares its wire schema once.

A request is the map {"op": OP, FIELD: value...}, a reply {"reply": NAME, FIELD: value...},
where the fields are exactly the class's `SCHEMA` (formats/schema.py): an unknown key, a missing
key, a value of the wrong type or out of its bounds, or an unknown op is an `IpcError` naming
the field. `REQUESTS` and `REPLIES` map each op or reply name to its class, for encoding and
decoding alike. Nothing here trusts the peer. docs/agent.md lists what goes on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from sfupdate import errors
from sfupdate.errors import IpcError, SfuError
from sfupdate.formats.ipc.framing import MAX_CHUNK, Connection, decode_map
from sfupdate.formats.schema import (
    BOOL,
    UINT,
    Field,
    Schema,
    blob,
    list_of,
    nullable,
    one_of,
    record,
    text,
)
from sfupdate.formats.sfui import cbor

MAX_TEXT: Final = 1024
SLOT_NAMES: Final = ("A", "B")
SLOT_STATES: Final = ("confirmed", "trial", "invalid", "empty", "bad", "superseded")
#: Signed objects the client carries to the agent (remote/commands.py, remote/policy.py).
MAX_COMMAND: Final = 16 * 1024
MAX_POLICY: Final = 32 * 1024
MAX_TRUST_UPDATE: Final = 64 * 1024
MAX_TOKEN: Final = 64 * 1024
MIN_NONCE, MAX_NONCE = 8, 64  # RFC 9711 nonce sizes
REGION_RESULTS: Final = ("ok", "mismatch", "absent")
REGION_ACTIONS: Final = ("none", "reported", "reverted", "revert-refused")
MAX_RESULTS: Final = 64
MAX_EVENTS: Final = 128
MAX_ANCHORS: Final = 16  # active anchors one role holds at most

TEXT: Final = text(MAX_TEXT)
UUID_TEXT: Final = text(pattern=re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"))
HEX256: Final = text(pattern=re.compile(r"[0-9a-f]{64}"))
SLOT_NAME: Final = one_of(*SLOT_NAMES)
#: An `sfupdate.errors` class's wire code (errors.SfuError.code).
ERROR_CODE: Final = text(pattern=re.compile(r"[a-z][a-z0-9-]{0,63}"))


class Message:
    """What every message class declares: its `SCHEMA` (none: a message without fields) and
    its `op` (a request) or `reply` name (a reply)."""

    SCHEMA: ClassVar[Schema] = Schema("message")


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRequest(Message):
    op: ClassVar[str] = "status"


@dataclass(frozen=True)
class InstallBegin(Message):
    """Opens an install session. `size` is the SFUI's total length if the client knows it;
    the agent then refuses more bytes than that."""

    size: int | None
    op: ClassVar[str] = "install-begin"
    SCHEMA: ClassVar[Schema] = Schema("install-begin", Field("size", nullable(UINT)))


@dataclass(frozen=True)
class Chunk(Message):
    """The next bytes of the SFUI. Chunks get no reply; the agent answers only at the end
    or as soon as it refuses the install."""

    data: bytes
    op: ClassVar[str] = "chunk"
    SCHEMA: ClassVar[Schema] = Schema("chunk", Field("data", blob(1, MAX_CHUNK)))


@dataclass(frozen=True)
class InstallEnd(Message):
    op: ClassVar[str] = "install-end"


@dataclass(frozen=True)
class ConfirmRequest(Message):
    op: ClassVar[str] = "confirm"


@dataclass(frozen=True)
class RejectTrialRequest(Message):
    op: ClassVar[str] = "reject-trial"


@dataclass(frozen=True)
class CheckRequest(Message):
    """Re-measure the running slot, the agent bundle and the policy's regions now."""

    op: ClassVar[str] = "check"


@dataclass(frozen=True)
class AttestRequest(Message):
    """An attestation token (EAT) answering `nonce` (8 to 64 bytes)."""

    nonce: bytes
    op: ClassVar[str] = "attest"
    SCHEMA: ClassVar[Schema] = Schema("attest", Field("nonce", blob(MIN_NONCE, MAX_NONCE)))


@dataclass(frozen=True)
class PolicyInstallRequest(Message):
    """A signed integrity policy (COSE_Sign1) to install."""

    policy: bytes
    op: ClassVar[str] = "policy-install"
    SCHEMA: ClassVar[Schema] = Schema("policy-install", Field("policy", blob(1, MAX_POLICY)))


@dataclass(frozen=True)
class RemoteRequest(Message):
    """A signed remote command (COSE_Sign1), carried as is from the operator."""

    command: bytes
    op: ClassVar[str] = "remote"
    SCHEMA: ClassVar[Schema] = Schema("remote", Field("command", blob(1, MAX_COMMAND)))


@dataclass(frozen=True)
class TrustUpdateRequest(Message):
    """A signed trust update (COSE_Sign, remote/trust.py) to apply."""

    update: bytes
    op: ClassVar[str] = "trust-update"
    SCHEMA: ClassVar[Schema] = Schema("trust-update",
                                      Field("update", blob(1, MAX_TRUST_UPDATE)))


@dataclass(frozen=True)
class AuditRequest(Message):
    """The remote-command state, the integrity policy in force and the event log."""

    op: ClassVar[str] = "audit"


Request = (StatusRequest | InstallBegin | Chunk | InstallEnd | ConfirmRequest
           | RejectTrialRequest | CheckRequest | AttestRequest | PolicyInstallRequest
           | RemoteRequest | AuditRequest | TrustUpdateRequest)

#: Every request class by its op.
REQUESTS: Final[Mapping[str, type[Request]]] = {cls.op: cls for cls in (
    StatusRequest, InstallBegin, Chunk, InstallEnd, ConfirmRequest, RejectTrialRequest,
    CheckRequest, AttestRequest, PolicyInstallRequest, RemoteRequest, AuditRequest,
    TrustUpdateRequest)}


def encode_request(request: Request) -> dict[str, Any]:
    return {"op": request.op, **request.SCHEMA.dump(request)}


def decode_request(obj: Mapping[str, Any]) -> Request:
    op = obj.get("op")
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise IpcError(f"unknown op {op!r}"[:200])
    fields = {key: value for key, value in obj.items() if key != "op"}
    return cls(**cls.SCHEMA.load(fields, IpcError, where=f"{op} request"))


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


# --- replies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotReport:
    """One slot as the agent reports it (the slot's state is board.records.SlotStatus's)."""

    state: str
    sequence: int | None
    digest: str | None

    SCHEMA: ClassVar[Schema] = Schema("slot", Field("state", one_of(*SLOT_STATES)),
                                      Field("sequence", nullable(UINT)),
                                      Field("digest", nullable(HEX256)))

    def to_json(self) -> dict[str, Any]:
        return self.SCHEMA.dump(self)


_SLOTS: Final = Schema("slots", *(Field(name, record(SlotReport.SCHEMA, SlotReport))
                                  for name in SLOT_NAMES))


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
    slots: Mapping[str, SlotReport]

    SCHEMA: ClassVar[Schema] = Schema(
        "status", Field("vendor_id", UUID_TEXT), Field("class_id", UUID_TEXT),
        Field("running_slot", SLOT_NAME), Field("running_sequence", UINT),
        Field("rollback_floor", UINT), Field("trial_slot", nullable(SLOT_NAME)),
        Field("trial_tries_left", nullable(UINT)), Field("slots", record(_SLOTS, dict)))

    def to_json(self) -> dict[str, Any]:
        return self.SCHEMA.dump(self)

    @property
    def running_digest(self) -> str | None:
        """The SHA-256 (hex) the agent recorded for the running slot's image."""
        report = self.slots.get(self.running_slot)
        return None if report is None else report.digest


@dataclass(frozen=True)
class StatusReply(Message):
    status: AgentStatus
    reply: ClassVar[str] = "status"
    SCHEMA: ClassVar[Schema] = Schema("status reply",
                                      Field("status", record(AgentStatus.SCHEMA, AgentStatus)))


@dataclass(frozen=True)
class ReadyReply(Message):
    """The install session is open: the client may stream chunks."""

    reply: ClassVar[str] = "ready"


@dataclass(frozen=True)
class InstallResult(Message):
    """A completed install: the slot now on trial, its sequence number and image digest."""

    slot: str
    sequence: int
    digest: str
    reply: ClassVar[str] = "installed"
    SCHEMA: ClassVar[Schema] = Schema("installed reply", Field("slot", SLOT_NAME),
                                      Field("sequence", UINT), Field("digest", HEX256))

    def to_json(self) -> dict[str, Any]:
        return self.SCHEMA.dump(self)


@dataclass(frozen=True)
class ErrorReply(Message):
    """A refusal: the wire code of the `sfupdate.errors` class the agent raised
    (`SfuError.code`, sent under the key "error"), and its message."""

    code: str
    message: str
    reply: ClassVar[str] = "error"
    SCHEMA: ClassVar[Schema] = Schema("error reply", Field("error", ERROR_CODE, name="code"),
                                      Field("message", TEXT))

    @classmethod
    def from_exception(cls, exc: SfuError) -> ErrorReply:
        return cls(exc.code, str(exc)[:MAX_TEXT])

    def to_exception(self) -> SfuError:
        """The class with that code; an IpcError for a code this version does not know."""
        error = errors.error_class(self.code)
        if error is None:
            return IpcError(f"agent reported an unknown error '{self.code}': {self.message}")
        return error(self.message)


@dataclass(frozen=True)
class RegionResult:
    """One re-measured region: `result` ok/mismatch/absent; `action` what the agent did."""

    region: str
    result: str
    detail: str
    action: str

    SCHEMA: ClassVar[Schema] = Schema("region", Field("region", TEXT),
                                      Field("result", one_of(*REGION_RESULTS)),
                                      Field("detail", TEXT),
                                      Field("action", one_of(*REGION_ACTIONS)))


@dataclass(frozen=True)
class IntegrityReport(Message):
    """The answer to `check`."""

    results: tuple[RegionResult, ...]
    events_total: int
    reply: ClassVar[str] = "integrity"
    SCHEMA: ClassVar[Schema] = Schema(
        "integrity reply", Field("events_total", UINT),
        Field("results", list_of(record(RegionResult.SCHEMA, RegionResult), MAX_RESULTS)))

    @property
    def intact(self) -> bool:
        return all(r.result == "ok" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"intact": self.intact, **self.SCHEMA.dump(self)}


@dataclass(frozen=True)
class TokenReply(Message):
    """An attestation token (COSE_Sign1 EAT, signed by the device identity key)."""

    token: bytes
    reply: ClassVar[str] = "token"
    SCHEMA: ClassVar[Schema] = Schema("token reply", Field("token", blob(1, MAX_TOKEN)))


@dataclass(frozen=True)
class PolicyReply(Message):
    sequence: int
    regions: int
    reply: ClassVar[str] = "policy"
    SCHEMA: ClassVar[Schema] = Schema("policy reply", Field("sequence", UINT),
                                      Field("regions", UINT))


@dataclass(frozen=True)
class TrustReply(Message):
    """A trust update applied: the trust store's new version and what changed."""

    version: int
    message: str
    reply: ClassVar[str] = "trust"
    SCHEMA: ClassVar[Schema] = Schema("trust reply", Field("version", UINT),
                                      Field("message", TEXT))


@dataclass(frozen=True)
class RemoteResult(Message):
    """What a remote command did; `token` is an attestation of the state after it, whose
    nonce is the command's (inspect) or the SHA-256 of the signed command (other actions)."""

    action: str
    number: int
    message: str
    token: bytes
    reply: ClassVar[str] = "remote"
    SCHEMA: ClassVar[Schema] = Schema("remote reply", Field("action", TEXT),
                                      Field("number", UINT), Field("message", TEXT),
                                      Field("token", blob(1, MAX_TOKEN)))

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "number": self.number, "message": self.message}


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

    SCHEMA: ClassVar[Schema] = Schema(
        "event", Field("n", UINT, name="number"), Field("first", UINT), Field("last", UINT),
        Field("count", UINT), Field("kind", TEXT), Field("subject", TEXT),
        Field("detail", TEXT), Field("pinned", BOOL))


@dataclass(frozen=True)
class TrustRole:
    """One role of the trust store: its threshold and its active anchors' key IDs (hex)."""

    role: str
    threshold: int
    anchors: tuple[str, ...]

    SCHEMA: ClassVar[Schema] = Schema(
        "trust role", Field("role", one_of("firmware", "operator", "recovery")),
        Field("threshold", UINT), Field("anchors", list_of(HEX256, MAX_ANCHORS)))


def _trust_role(role: str, threshold: int, anchors: list[str]) -> TrustRole:
    return TrustRole(role, threshold, tuple(anchors))


@dataclass(frozen=True)
class AuditInfo(Message):
    """The answer to `audit`. `to_json()` is also the wire form."""

    last_command: int
    quarantine: str | None  # hex key ID of the recovery key, or None
    policy_sequence: int | None
    events_total: int
    acknowledged: int  # the highest event number the operator acknowledged
    time_floor: int
    events: tuple[EventEntry, ...]
    trust_version: int  # the next trust update must name a higher version
    trust: tuple[TrustRole, ...]
    reply: ClassVar[str] = "audit"
    SCHEMA: ClassVar[Schema] = Schema(
        "audit reply", Field("last_command", UINT), Field("quarantine", nullable(HEX256)),
        Field("policy_sequence", nullable(UINT)), Field("events_total", UINT),
        Field("acknowledged", UINT), Field("time_floor", UINT),
        Field("events", list_of(record(EventEntry.SCHEMA, EventEntry), MAX_EVENTS)),
        Field("trust_version", UINT),
        Field("trust", list_of(record(TrustRole.SCHEMA, _trust_role), 3)))

    def to_json(self) -> dict[str, Any]:
        return self.SCHEMA.dump(self)


Reply = (StatusReply | ReadyReply | InstallResult | ErrorReply | IntegrityReport | TokenReply
         | PolicyReply | RemoteResult | AuditInfo | TrustReply)

#: Every reply class by its reply name.
REPLIES: Final[Mapping[str, type[Reply]]] = {cls.reply: cls for cls in (
    StatusReply, ReadyReply, InstallResult, ErrorReply, IntegrityReport, TokenReply,
    PolicyReply, RemoteResult, AuditInfo, TrustReply)}


def encode_reply(reply: Reply) -> dict[str, Any]:
    return {"reply": reply.reply, **reply.SCHEMA.dump(reply)}


def decode_reply(obj: Mapping[str, Any]) -> Reply:
    kind = obj.get("reply")
    cls = REPLIES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise IpcError(f"unknown reply {kind!r}"[:200])
    fields = {key: value for key, value in obj.items() if key != "reply"}
    return cls(**cls.SCHEMA.load(fields, IpcError, where=f"{kind} reply"))
