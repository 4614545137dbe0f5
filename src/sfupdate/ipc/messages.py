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

Check = Callable[[Any], bool]


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _chunk(value: Any) -> bool:
    return isinstance(value, bytes) and 0 < len(value) <= MAX_CHUNK


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


Request = StatusRequest | InstallBegin | Chunk | InstallEnd | ConfirmRequest | RejectTrialRequest

_REQUEST_SCHEMAS: Final[dict[str, dict[str, Check]]] = {
    "status": {},
    "install-begin": {"size": _optional(_uint)},
    "chunk": {"data": _chunk},
    "install-end": {},
    "confirm": {},
    "reject-trial": {},
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
    simple: dict[str, Request] = {"status": StatusRequest(), "install-end": InstallEnd(),
                                  "confirm": ConfirmRequest(), "reject-trial": RejectTrialRequest()}
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


Reply = StatusReply | ReadyReply | InstalledReply | ErrorReply


def encode_reply(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, StatusReply):
        return {"reply": reply.reply, "status": reply.status.to_json()}
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
    raise IpcError(f"unknown reply {kind!r}"[:200])
