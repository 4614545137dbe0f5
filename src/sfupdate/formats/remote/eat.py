"""Attestation tokens: RFC 9711 Entity Attestation Tokens, CBOR claims in a COSE_Sign1 signed
with the device identity key created at provisioning.

Registered claims used: nonce (10), ueid (256), oemid (258, the vendor UUID as a random-type
OEMID), hwmodel (259, the class UUID), oemboot (262, secure boot on), eat_profile (265),
measurement results (274, the integrity checks), iat (6). sfupdate's own state goes in claims
with text names (RFC 8392 allows them): "sfu-slots", "sfu-running", "sfu-trial",
"sfu-floor", "sfu-boot-log", "sfu-quarantine" (the recovery key ID or null),
"sfu-command" (the last remote command number the device accepted), and, only in a token
that answers a remote command, "sfu-answer": {"command": N, "action": A, "outcome": text}.
The agent puts "sfu-answer" only into the answer to a command it executed; a plain attest
request cannot produce it, so `verify_answer` (which requires it) cannot be satisfied by a
token obtained with a nonce equal to the command's hash.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from sfupdate.errors import AuthenticationError, SchemaError
from sfupdate.formats.remote.commands import RemoteCommand
from sfupdate.formats.schema import (
    INT,
    UUID,
    Field,
    Kind,
    Schema,
    blob,
    converted,
    list_of,
    nullable,
    one_of,
    record,
    text,
    tuple_of,
)
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.cose import PublicKey, Signer, TrustedKey, key_id, open_attached, sign1

PROFILE: Final = "tag:sfupdate.dev,2026:eat-v1"
UEID_TYPE_RAND: Final = 0x01
MIN_NONCE, MAX_NONCE = 8, 64  # RFC 9711 section 4.1
MAX_TOKEN_SIZE: Final = 64 * 1024

CLAIM_IAT, CLAIM_NONCE, CLAIM_UEID, CLAIM_OEMID, CLAIM_HWMODEL = 6, 10, 256, 258, 259
CLAIM_OEMBOOT, CLAIM_PROFILE, CLAIM_MEASRES = 262, 265, 274
MEASUREMENT_SYSTEM: Final = "sfupdate-integrity"
#: RFC 9711 measurement-results result codes.
RESULT_SUCCESS, RESULT_FAIL, RESULT_NOT_RUN, RESULT_ABSENT = 1, 2, 3, 4


def ueid_for(device_key: PublicKey) -> bytes:
    """The device's UEID: type RAND (0x01) + SHA-256 of its identity key's SPKI."""
    return bytes([UEID_TYPE_RAND]) + key_id(device_key)


@dataclass(frozen=True)
class SlotClaim:
    name: str
    state: str
    sequence: int | None
    digest: bytes | None


@dataclass(frozen=True)
class IntegrityResult:
    """One checked region: result is one of RESULT_* (RFC 9711 measurement results)."""

    region: str
    result: int


@dataclass(frozen=True)
class CommandAnswer:
    """The answer claim: which command the token answers, and what the device did."""

    command: int
    action: str
    outcome: str


_RESULT_NAMES: Final = {RESULT_SUCCESS: "ok", RESULT_FAIL: "MISMATCH",
                        RESULT_NOT_RUN: "not run", RESULT_ABSENT: "absent"}
_TEXT: Final = text()
_RESULT_CODE: Final = Kind("an RFC 9711 measurement result code",
                           lambda value: INT.accepts(value) and value in _RESULT_NAMES)
_SLOT: Final = Schema("slot claim", Field("name", _TEXT), Field("state", _TEXT),
                      Field("sequence", nullable(INT)), Field("digest", nullable(blob())),
                      extra=True)
_ANSWER: Final = Schema("answer claim", Field("command", INT), Field("action", _TEXT),
                        Field("outcome", _TEXT))
#: measurement-results: [[system, [[region, result], ...]]], ours the only system read.
_MEASUREMENTS: Final = converted(
    list_of(tuple_of(one_of(MEASUREMENT_SYSTEM),
                     list_of(tuple_of(_TEXT, _RESULT_CODE))), min_items=1),
    lambda systems: tuple(IntegrityResult(*result) for result in systems[0][1]),
    lambda results: [(MEASUREMENT_SYSTEM, [(r.region, r.result) for r in results])])


@dataclass(frozen=True)
class AttestationClaims:
    nonce: bytes
    ueid: bytes
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    slots: tuple[SlotClaim, ...]
    running_slot: str
    trial_slot: str | None
    rollback_floor: int
    boot_log: tuple[bytes, ...]
    integrity: tuple[IntegrityResult, ...]
    issued_at: int
    quarantine: bytes | None = None
    last_command: int = 0
    answer: CommandAnswer | None = None

    SCHEMA: ClassVar[Schema] = Schema(
        "attestation claims",
        Field(CLAIM_NONCE, blob(), name="nonce"), Field(CLAIM_UEID, blob(), name="ueid"),
        Field(CLAIM_OEMID, UUID, name="vendor_id"), Field(CLAIM_HWMODEL, UUID, name="class_id"),
        Field("sfu-slots", list_of(record(_SLOT, SlotClaim)), name="slots"),
        Field("sfu-running", _TEXT, name="running_slot"),
        Field("sfu-trial", nullable(_TEXT), name="trial_slot"),
        Field("sfu-floor", INT, name="rollback_floor"),
        Field("sfu-boot-log", list_of(blob()), name="boot_log"),
        Field(CLAIM_MEASRES, _MEASUREMENTS, name="integrity"),
        Field(CLAIM_IAT, INT, name="issued_at"),
        Field("sfu-quarantine", nullable(blob()), name="quarantine"),
        Field("sfu-command", INT, name="last_command"),
        Field("sfu-answer", record(_ANSWER, CommandAnswer), name="answer", optional=True),
        extra=True)

    def encode(self) -> bytes:
        return cbor.dumps({CLAIM_OEMBOOT: True, CLAIM_PROFILE: PROFILE,
                           **self.SCHEMA.dump(self)})

    @classmethod
    def decode(cls, data: bytes) -> AttestationClaims:
        obj = cbor.loads(data, "attestation claims")
        if not isinstance(obj, dict) or obj.get(CLAIM_PROFILE) != PROFILE:
            raise SchemaError("not an sfupdate attestation token (profile claim)")
        return cls(**cls.SCHEMA.load(obj, SchemaError))

    def to_json(self) -> dict[str, Any]:
        return {
            "nonce": self.nonce.hex(), "ueid": self.ueid.hex(),
            "vendor_id": str(self.vendor_id), "class_id": str(self.class_id),
            "running_slot": self.running_slot, "trial_slot": self.trial_slot,
            "rollback_floor": self.rollback_floor, "issued_at": self.issued_at,
            "slots": [{"name": s.name, "state": s.state, "sequence": s.sequence,
                       "digest": s.digest.hex() if s.digest else None} for s in self.slots],
            "boot_log": [m.hex() for m in self.boot_log],
            "integrity": [{"region": r.region, "result": _RESULT_NAMES[r.result]}
                          for r in self.integrity],
            "quarantine": self.quarantine.hex() if self.quarantine else None,
            "last_command": self.last_command,
            "answer": None if self.answer is None else _ANSWER.dump(self.answer),
        }


def sign_token(claims: AttestationClaims, device_signer: Signer) -> bytes:
    return sign1(claims.encode(), device_signer, detached=False)


def verify_token(token: bytes, device_key: TrustedKey, nonce: bytes) -> AttestationClaims:
    """Check the device's signature and that the token answers this nonce (freshness)."""
    envelope, payload = open_attached(token, "attestation token", MAX_TOKEN_SIZE)
    envelope.verify(payload, [device_key])
    claims = AttestationClaims.decode(payload)
    if not hmac.compare_digest(claims.nonce, nonce):
        raise AuthenticationError("attestation token answers another nonce (replayed?)")
    if claims.ueid != ueid_for(device_key.public_key):
        raise AuthenticationError("attestation token's UEID is not the signing device's")
    return claims


def verify_answer(token: bytes, device_key: TrustedKey, command: RemoteCommand,
                  signed_command: bytes) -> AttestationClaims:
    """Check that `token` is the device's answer to `command` (whose signed bytes are
    `signed_command`): signed by the device, bound to the command's nonce (the inspect nonce,
    else the SHA-256 of the signed command), and carrying the answer claim for exactly that
    command number and action — which only executing the command produces."""
    nonce = (command.arguments["nonce"] if command.action == "inspect"
             else hashlib.sha256(signed_command).digest())
    claims = verify_token(token, device_key, nonce)
    answer = claims.answer
    if answer is None:
        raise AuthenticationError("the token is a plain attestation, not the device's answer "
                                  "to a command (it carries no answer claim)")
    if (answer.command, answer.action) != (command.number, command.action):
        raise AuthenticationError(f"the token answers command {answer.command} "
                                  f"({answer.action}), not {command.number} ({command.action})")
    return claims
