"""The pure parts: integrity policy format, the new IPC messages, the secure-storage records
(event log ring, remote state)."""

from __future__ import annotations

from typing import Any

import pytest

from sfupdate import errors
from sfupdate.formats.ipc.messages import (
    AttestRequest,
    AuditInfo,
    EventEntry,
    IntegrityReport,
    RegionResult,
    RemoteRequest,
    RemoteResult,
    Reply,
    TrustRole,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from sfupdate.formats.remote import IntegrityPolicy, Region, sign_policy, verify_policy
from sfupdate.formats.sfui import TrustedKey, cbor
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.records import (
    EVENT_RING_CAPACITY,
    MAX_EVENT_TEXT,
    PINNED_CAPACITY,
    TAMPER_RESERVE,
    EventLog,
    RemoteState,
)
from sfupdate.secure.board.sim import MAX_RECORD
from tests.afterattack.support import class_target, sha256


def test_policy_round_trip(es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    policy = IntegrityPolicy(class_target(), 4, (
        Region("cfg", sha256(b"x"), "report", path="/etc/x"),
        Region("head", sha256(b"y"), "revert", slot="running", offset=16, length=4096),
        Region("app-head", sha256(b"z"), "report", slot="B", offset=0, length=64,
               component="app")))
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
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "file": "/x",
     "component": "app"},
    {"name": "x", "sha256": b"\0" * 32, "on-mismatch": "report", "slot": "A", "offset": 0,
     "length": 1, "component": "App"},
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
    replies: list[Reply] = [
        IntegrityReport((RegionResult("running-slot", "mismatch", "d", "reported"),), 3),
        RemoteResult("revert", 7, "done", b"token"),
        AuditInfo(7, "ab" * 32, None, 1, 0, 5, (EventEntry(1, 2, 3, 2, "k", "s", "d", True),),
                  4, (TrustRole("firmware", 2, ("cd" * 32, "ef" * 32)),)),
    ]
    for reply in replies:
        assert decode_reply(cbor.loads(cbor.dumps(encode_reply(reply)), "t")) == reply


def test_malformed_integrity_reply_is_refused() -> None:
    obj = {"reply": "integrity", "events_total": 1,
           "results": [{"region": "x", "result": "fine", "detail": "", "action": "none"}]}
    with pytest.raises(errors.IpcError):
        decode_reply(obj)


def test_event_log_keeps_the_newest_unpinned_entries_and_the_total() -> None:
    log = EventLog()
    for i in range(EVENT_RING_CAPACITY + 10):
        log = log.append(i, "revert-refused", "integrity-policy", f"finding {i}" + "x" * 500)
    decoded = EventLog.decode(log.encode())
    assert decoded == log and decoded.total == EVENT_RING_CAPACITY + 10
    assert len(decoded.events) == EVENT_RING_CAPACITY
    assert decoded.events[0].number == 11 and len(decoded.events[-1].detail) == MAX_EVENT_TEXT


def test_repeated_identical_events_coalesce_with_count_first_and_last() -> None:
    log = EventLog()
    for t in range(100, 200):
        log = log.append(t, "integrity-mismatch", "running-slot", "payload digest mismatch")
    (event,) = log.events
    assert (event.count, event.first, event.last, log.total) == (100, 100, 199, 1)


def test_operator_events_and_first_tamper_stay_pinned_through_any_flood() -> None:
    log = EventLog().append(1, "command", "revert", "command 1 by operator key ab")
    log = log.append(2, "integrity-mismatch", "running-slot", "first tamper")
    for i in range(10 * EVENT_RING_CAPACITY):  # distinct findings: no coalescing helps here
        log = log.append(3 + i, "integrity-mismatch", "running-slot", f"variant {i}")
        log = log.append(3 + i, "revert-refused", "integrity-policy", f"variant {i}")
    assert [e.number for e in log.pinned] == [1, 2]
    assert [e.detail for e in log.pinned] == ["command 1 by operator key ab", "first tamper"]
    released = log.acknowledge(2)
    assert released.pinned == () and released.acknowledged == 2
    assert released.append(9, "integrity-mismatch", "running-slot", "again").pinned[0].number \
        == log.total + 1  # once acknowledged, the next tamper is pinned as a first again


def test_operator_events_stop_before_the_tamper_reserve_is_used() -> None:
    log = EventLog()
    while log.operator_room():
        log = log.append(0, "command", "reboot", f"command {log.total + 1}")
    assert len(log.pinned) == PINNED_CAPACITY - TAMPER_RESERVE
    for region in range(TAMPER_RESERVE):  # every region a policy can name still gets pinned
        log = log.append(1, "integrity-mismatch", f"policy:r{region}", "mismatch")
    assert len(log.pinned) == PINNED_CAPACITY


def test_a_full_event_log_fits_one_secure_storage_record() -> None:
    log = EventLog()
    for i in range(PINNED_CAPACITY + EVENT_RING_CAPACITY):
        kind = "command" if i < PINNED_CAPACITY else "revert-refused"
        log = log.append(2**40 + i, kind, "s" * 500, f"{i} " + "d" * 500)
    assert len(log.pinned) == PINNED_CAPACITY and len(log.events) == len(log.pinned) + 32
    assert len(log.encode()) <= MAX_RECORD


def test_acknowledging_an_event_never_logged_is_refused() -> None:
    with pytest.raises(errors.DeviceStateError, match="never logged"):
        EventLog().append(1, "command", "reboot", "x").acknowledge(5)


def test_inconsistent_event_log_is_a_storage_integrity_error() -> None:
    log = EventLog().append(1, "k", "s", "d").append(2, "k", "s", "e")
    obj = cbor.loads(log.encode(), "t")
    obj["total"] = 1  # an event numbered above the total
    with pytest.raises(errors.StorageIntegrityError):
        EventLog.decode(cbor.dumps(obj))


def test_remote_state_round_trip_and_bad_key_id() -> None:
    state = RemoteState(9, b"\x02" * 32, 1_700_000_000)
    assert RemoteState.decode(state.encode()) == state
    bad = cbor.loads(state.encode(), "t")
    bad["quarantine"] = b"short"
    with pytest.raises(errors.StorageIntegrityError):
        RemoteState.decode(cbor.dumps(bad))
