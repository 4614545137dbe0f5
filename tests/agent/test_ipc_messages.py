"""The IPC layer alone: framing limits and the strict per-message schema."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.errors import IpcError
from sfupdate.formats.ipc.framing import MAX_CHUNK, MAX_FRAME, Connection, PeerClosedError
from sfupdate.formats.ipc.messages import (
    AgentStatus,
    Chunk,
    ErrorReply,
    InstallBegin,
    SlotReport,
    StatusReply,
    chunk_frame,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    read_request,
)
from sfupdate.formats.sfui import cbor


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    """A framed connection and the raw socket at its other end."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn = Connection(a, timeout=1.0)
    yield conn, b
    a.close()
    b.close()


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_a_message_round_trips(pair: tuple[Connection, socket.socket]) -> None:
    conn, raw = pair
    sender = threading.Thread(
        target=Connection(raw, 2.0).send, args=(encode_request(Chunk(b"x" * MAX_CHUNK)),))
    sender.start()
    try:
        assert decode_request(conn.recv()) == Chunk(b"x" * MAX_CHUNK)
    finally:
        sender.join()


def test_oversized_frame_header_is_refused_before_reading_the_body(
        pair: tuple[Connection, socket.socket]) -> None:
    conn, raw = pair
    raw.sendall(struct.pack(">I", MAX_FRAME + 1))
    started = time.monotonic()
    with pytest.raises(IpcError, match="exceeds the cap"):
        conn.recv()
    assert time.monotonic() - started < 0.5  # refused at once, not after a timeout


def test_truncated_frame_is_a_protocol_error(pair: tuple[Connection, socket.socket]) -> None:
    conn, raw = pair
    raw.sendall(frame(cbor.dumps({"op": "status"}))[:-2])
    raw.shutdown(socket.SHUT_WR)
    with pytest.raises(IpcError, match="closed inside a frame"):
        conn.recv()


def test_close_between_frames_is_a_clean_end(pair: tuple[Connection, socket.socket]) -> None:
    conn, raw = pair
    raw.shutdown(socket.SHUT_WR)
    with pytest.raises(PeerClosedError):
        conn.recv()


def test_slow_trickle_hits_the_whole_frame_deadline(
        pair: tuple[Connection, socket.socket]) -> None:
    conn, raw = pair
    body = frame(cbor.dumps({"op": "status"}))
    stop = threading.Event()

    def trickle() -> None:
        for byte in body:
            if stop.wait(0.3):
                return
            raw.send(bytes([byte]))

    thread = threading.Thread(target=trickle)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(IpcError, match="no complete message"):
            conn.recv(timeout=0.8)
    finally:
        stop.set()
        thread.join()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("body", [
    b"\xff\x00\x01",  # not CBOR
    b"\xa1\x62op\x66stat",  # a text string shorter than its head says
    cbor.dumps(["op", "status"]),  # not a map
    b"\xbf\x62op\x66status\xff",  # indefinite-length map: not deterministic
    cbor.dumps({"op": "status"}) + b"\x00",  # trailing byte
])
def test_malformed_bodies_are_protocol_errors(pair: tuple[Connection, socket.socket],
                                              body: bytes) -> None:
    conn, raw = pair
    raw.sendall(frame(body))
    with pytest.raises(IpcError):
        decode_request(conn.recv())


def test_empty_frame_is_a_protocol_error(pair: tuple[Connection, socket.socket]) -> None:
    conn, raw = pair
    raw.sendall(frame(b""))
    with pytest.raises(IpcError, match="empty frame"):
        conn.recv()


@pytest.mark.parametrize(("message", "match"), [
    ({"op": "reboot"}, "unknown op"),
    ({"op": 7}, "unknown op"),
    ({"data": b"x"}, "unknown op"),
    ({"op": "status", "verbose": True}, "unknown key"),
    ({"op": "install-begin"}, "missing key"),
    ({"op": "install-begin", "size": -1}, "wrong type"),
    ({"op": "install-begin", "size": True}, "wrong type"),
    ({"op": "install-begin", "size": "12"}, "wrong type"),
    ({"op": "install-begin", "size": 2**64}, "wrong type"),
    ({"op": "chunk", "data": "text, not bytes"}, "wrong type"),
    ({"op": "chunk", "data": b""}, "wrong type"),
    ({"op": "chunk", "data": b"x" * (MAX_CHUNK + 1)}, "wrong type"),
    ({"op": "chunk", "data": b"x", "offset": 0}, "unknown key"),
])
def test_schema_violations_are_refused(message: dict[str, object], match: str) -> None:
    with pytest.raises(IpcError, match=match):
        decode_request(message)


def test_requests_round_trip_through_their_encoding() -> None:
    for request in (InstallBegin(None), InstallBegin(12345), Chunk(b"abc")):
        assert decode_request(cbor.loads(cbor.dumps(encode_request(request)), "t")) == request


def _status() -> AgentStatus:
    return AgentStatus("9e5b1d3a-8b1c-5a55-9e1e-0a0a0a0a0a0a",
                       "1c2d3e4f-0000-5000-8000-000000000000", "A", 3, 3, "B", 2,
                       {"A": SlotReport("confirmed", 3, "ab" * 32),
                        "B": SlotReport("trial", 4, "cd" * 32)})


def test_status_reply_round_trips_and_is_its_json() -> None:
    reply = StatusReply(_status())
    wire = cbor.loads(cbor.dumps(encode_reply(reply)), "t")
    assert decode_reply(wire) == reply
    assert wire["status"] == _status().to_json()


def test_status_reply_with_a_bad_field_is_refused() -> None:
    wire = encode_reply(StatusReply(_status()))
    wire["status"]["slots"]["B"]["state"] = "bootable-trust-me"
    with pytest.raises(IpcError, match=r"status\.slots\.B\.state"):
        decode_reply(wire)
    wire = encode_reply(StatusReply(_status()))
    wire["status"]["running_slot"] = "C"
    with pytest.raises(IpcError, match="running_slot"):
        decode_reply(wire)


def _error_classes() -> list[type[errors.SfuError]]:
    return [cls for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.SfuError)]


def test_every_error_class_has_its_own_unique_wire_code() -> None:
    classes = _error_classes()
    assert all("code" in vars(cls) for cls in classes), [
        cls.__name__ for cls in classes if "code" not in vars(cls)]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes)
    assert all(errors.error_class(cls.code) is cls for cls in classes)


def test_wire_codes_are_stable() -> None:
    """A code is a promise to older clients: renaming a class must not change it."""
    assert {cls.__name__: cls.code for cls in _error_classes()
            if cls.__name__ in ("DowngradeError", "AgentBusyError", "IpcError",
                                "StorageIntegrityError", "PayloadDigestError")} == {
        "DowngradeError": "downgrade", "AgentBusyError": "agent-busy", "IpcError": "ipc",
        "StorageIntegrityError": "storage-integrity", "PayloadDigestError": "payload-digest"}


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_refusals_map_back_to_the_agents_error_class(cls: type[errors.SfuError]) -> None:
    wire = cbor.loads(cbor.dumps(encode_reply(ErrorReply.from_exception(cls("refused")))), "t")
    assert wire == {"reply": "error", "error": cls.code, "message": "refused"}
    exc = decode_reply(wire).to_exception()  # type: ignore[union-attr]
    assert type(exc) is cls
    assert str(exc) == "refused"


@pytest.mark.parametrize("code", ["not-an-error", "keyboard-interrupt", "os"])
def test_unknown_error_codes_become_ipc_errors(code: str) -> None:
    exc = ErrorReply(code, "boom").to_exception()
    assert type(exc) is IpcError and code in str(exc)


@pytest.mark.parametrize("code", ["DowngradeError", "", "a b", "x" * 65])
def test_malformed_error_codes_are_refused(code: str) -> None:
    with pytest.raises(IpcError, match="error"):
        decode_reply({"reply": "error", "error": code, "message": "m"})


@pytest.mark.parametrize("size", [1, 23, 24, 255, 256, 65535, 65536, MAX_CHUNK])
def test_chunk_fast_path_is_byte_for_byte_the_deterministic_encoding(
        pair: tuple[Connection, socket.socket], size: int) -> None:
    conn, raw = pair
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    parts = chunk_frame(data)
    assert b"".join(parts) == cbor.dumps({"op": "chunk", "data": data})
    sender = threading.Thread(target=Connection(raw, 2.0).send_parts, args=(parts,))
    sender.start()
    try:
        assert read_request(conn) == Chunk(data)
    finally:
        sender.join()


@pytest.mark.parametrize("body", [
    # the prefix of a chunk, then a bstr head that is not the shortest for its length
    cbor.dumps({"op": "chunk", "data": b""})[:-1] + b"\x58\x05" + b"hello",
    cbor.dumps({"op": "chunk", "data": b""})[:-1] + b"\x5a\x00\x00\x00\x05" + b"hello",
    # the right head, one byte too many or too few
    cbor.dumps({"op": "chunk", "data": b"hello"}) + b"!",
    cbor.dumps({"op": "chunk", "data": b"hello"})[:-1],
    cbor.dumps({"op": "chunk", "data": b""}),
])
def test_non_canonical_chunks_fall_through_to_the_strict_decoder(
        pair: tuple[Connection, socket.socket], body: bytes) -> None:
    conn, raw = pair
    raw.sendall(frame(body))
    with pytest.raises(IpcError):
        read_request(conn)


def test_docs_list_every_wire_code() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "agent.md").read_text()
    listed = dict(re.findall(r"`([a-z][a-z0-9-]*)` \| `(\w+Error)`", docs))
    assert listed == {cls.code: cls.__name__ for cls in _error_classes()}
