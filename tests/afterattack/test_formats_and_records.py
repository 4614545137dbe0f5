"""The pure parts: integrity policy format, the new IPC messages, the secure-storage records
(event log ring, remote state)."""

from __future__ import annotations

from typing import Any

import pytest

from sfupdate import errors
from sfupdate.board.records import EVENT_LOG_CAPACITY, EventLog, RemoteState
from sfupdate.ipc.messages import (
    AttestRequest,
    AuditInfo,
    AuditReply,
    EventEntry,
    IntegrityReply,
    IntegrityReport,
    RegionResult,
    RemoteReply,
    RemoteRequest,
    RemoteResult,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from sfupdate.keys.files import FileSigner
from sfupdate.remote import IntegrityPolicy, Region, sign_policy, verify_policy
from sfupdate.sfui import TrustedKey, cbor
from tests.afterattack.support import class_target, sha256


def test_policy_round_trip(es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    policy = IntegrityPolicy(class_target(), 4, (
        Region("cfg", sha256(b"x"), "report", path="/etc/x"),
        Region("head", sha256(b"y"), "revert", slot="running", offset=16, length=4096)))
    decoded, signer, body = verify_policy(sign_policy(policy, es256_signer), [es256_trusted])
    assert decoded == policy and signer.kid == es256_signer.kid
    assert IntegrityPolicy.decode(body) == policy


@pytest.mark.parametrize("region", [
    {"name": "Bad Name", "sha256": b"\0" * 32, "on-mismatch": "report", "file": "/x"},
    {"name": "x", "sha256": b"\0" * 31, "on-mismatch": "report", "file": "/x"},
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "erase", "file": "/x"},
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "file": "relative"},
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "slot": "C", "offset": 0,
     "length": 1},
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "slot": "A", "offset": 0,
     "length": 0},
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "file": "/x", "slot": "A",
     "offset": 0, "length": 1},
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "file": "/x", "extra": 1},
])
def test_malformed_policy_region_is_refused(region: dict[str, Any]) -> None:
    body = {0: "sfu-integrity-policy", 1: 1, 2: class_target().to_cbor(), 3: 1, 4: [region]}
    with pytest.raises(errors.SchemaError):
        IntegrityPolicy.decode(cbor.dumps(body))


def test_policy_limits_and_duplicates_are_refused() -> None:
    region = {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "file": "/x"}
    base = {0: "sfu-integrity-policy", 1: 1, 2: class_target().to_cbor(), 3: 1}
    with pytest.raises(errors.SchemaError, match="unique"):
        IntegrityPolicy.decode(cbor.dumps({**base, 4: [region, region]}))
    many = [{**region, "name": f"r{i}"} for i in range(33)]
    with pytest.raises(errors.LimitExceededError):
        IntegrityPolicy.decode(cbor.dumps({**base, 4: many}))
    with pytest.raises(errors.SchemaError):
        IntegrityPolicy.decode(cbor.dumps({**base, 0: "something-else", 4: []}))


@pytest.mark.parametrize("request_", [AttestRequest(b"n" * 8), RemoteRequest(b"\x01" * 100)])
def test_new_requests_round_trip(request_: Any) -> None:
    assert decode_request(cbor.loads(cbor.dumps(encode_request(request_)), "t")) == request_


@pytest.mark.parametrize("obj", [
    {"op": "attest", "nonce": b"short"},
    {"op": "attest", "nonce": b"n" * 65},
    {"op": "attest", "nonce": "text"},
    {"op": "remote", "command": b""},
    {"op": "remote", "command": b"c" * (16 * 1024 + 1)},
    {"op": "policy-install", "policy": b"p", "extra": 1},
    {"op": "check", "now": 1},
])
def test_malformed_new_requests_are_refused(obj: dict[str, Any]) -> None:
    with pytest.raises(errors.IpcError):
        decode_request(obj)


def test_new_replies_round_trip() -> None:
    replies = [
        IntegrityReply(IntegrityReport((RegionResult("running-slot", "mismatch", "d",
                                                     "reported"),), 3)),
        RemoteReply(RemoteResult("revert", 7, "done", b"token")),
        AuditReply(AuditInfo(7, "ab" * 32, None, 1, (EventEntry(1, 2, "k", "s", "d"),))),
    ]
    for reply in replies:
        assert decode_reply(cbor.loads(cbor.dumps(encode_reply(reply)), "t")) == reply


def test_malformed_integrity_reply_is_refused() -> None:
    obj = {"reply": "integrity", "events_total": 1,
           "results": [{"region": "x", "result": "fine", "detail": "", "action": "none"}]}
    with pytest.raises(errors.IpcError):
        decode_reply(obj)


def test_event_log_keeps_the_newest_entries_and_the_total() -> None:
    log = EventLog()
    for i in range(EVENT_LOG_CAPACITY + 10):
        log = log.append(i, "integrity-mismatch", "running-slot", f"finding {i}" + "x" * 500)
    decoded = EventLog.decode(log.encode())
    assert decoded == log and decoded.total == EVENT_LOG_CAPACITY + 10
    assert len(decoded.events) == EVENT_LOG_CAPACITY
    assert decoded.events[0].number == 11 and len(decoded.events[-1].detail) == 200


def test_inconsistent_event_log_is_a_storage_integrity_error() -> None:
    log = EventLog().append(1, "k", "s", "d").append(2, "k", "s", "d")
    obj = cbor.loads(log.encode(), "t")
    obj["total"] = 5  # numbering no longer matches the total
    with pytest.raises(errors.StorageIntegrityError):
        EventLog.decode(cbor.dumps(obj))


def test_remote_state_round_trip_and_bad_key_id() -> None:
    state = RemoteState(9, b"\x02" * 32)
    assert RemoteState.decode(state.encode()) == state
    bad = cbor.loads(state.encode(), "t")
    bad["quarantine"] = b"short"
    with pytest.raises(errors.StorageIntegrityError):
        RemoteState.decode(cbor.dumps(bad))
