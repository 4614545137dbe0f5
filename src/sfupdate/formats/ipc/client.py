"""`AgentClient`: the Rich-OS side of the IPC (see docs/agent.md and the IPC contract).

One connection per operation. An install streams the SFUI as chunk messages without waiting
for a reply to each; before every chunk the client looks whether the agent has already
answered (it answers early only to refuse), so a refusal surfaces at once instead of after
the whole image was sent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Final

from sfupdate.errors import IpcError, SfuError
from sfupdate.formats.ipc.framing import DEFAULT_TIMEOUT, MAX_CHUNK, Connection
from sfupdate.formats.ipc.messages import (
    AgentStatus,
    AttestRequest,
    AuditInfo,
    AuditRequest,
    CheckRequest,
    ConfirmRequest,
    ErrorReply,
    InstallBegin,
    InstallEnd,
    InstallResult,
    IntegrityReport,
    PolicyInstallRequest,
    PolicyReply,
    ReadyReply,
    RejectTrialRequest,
    RemoteRequest,
    RemoteResult,
    Reply,
    Request,
    SlotReport,
    StatusReply,
    StatusRequest,
    TokenReply,
    TrustReply,
    TrustUpdateRequest,
    chunk_frame,
    decode_reply,
    encode_request,
)
from sfupdate.formats.sfui import cbor
from sfupdate.progress import Progress, no_progress

__all__ = ["AgentClient", "AgentStatus", "AuditInfo", "InstallResult", "IntegrityReport",
           "RemoteResult", "SlotReport"]

#: A slow storage's flush rate (bytes/s): the final reply's wait grows with the image size.
FLUSH_RATE: Final = 8 * 1024 * 1024
#: Chunk messages carry up to this many bytes of the pieces the source yields ...
COALESCE_BYTES: Final = MAX_CHUNK
#: ... held for at most this long (seconds) after the first of them arrived.
COALESCE_SECONDS: Final = 0.1


class AgentClient:
    """Talks to the SFU Agent on a Unix socket; every read is bounded by `timeout` seconds."""

    def __init__(self, socket_path: str | os.PathLike[str],
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout

    def status(self) -> AgentStatus:
        return self._status_call(StatusRequest())

    def confirm(self) -> AgentStatus:
        """Make the trial slot the confirmed one; the agent then raises the rollback floor."""
        return self._status_call(ConfirmRequest())

    def reject_trial(self) -> AgentStatus:
        """Mark the trial slot bad and go back to the confirmed slot."""
        return self._status_call(RejectTrialRequest())

    def check(self) -> IntegrityReport:
        """Re-measure the running slot, the agent bundle and the policy's regions now."""
        reply = self._call(CheckRequest())
        if not isinstance(reply, IntegrityReport):
            raise self._unexpected(reply)
        return reply

    def attest(self, nonce: bytes) -> bytes:
        """An attestation token (EAT) for `nonce`; verify it with sfupdate.formats.remote."""
        reply = self._call(AttestRequest(nonce))
        if not isinstance(reply, TokenReply):
            raise self._unexpected(reply)
        return reply.token

    def install_policy(self, signed_policy: bytes) -> tuple[int, int]:
        """Install a signed integrity policy; returns (its sequence, its region count)."""
        reply = self._call(PolicyInstallRequest(signed_policy))
        if not isinstance(reply, PolicyReply):
            raise self._unexpected(reply)
        return reply.sequence, reply.regions

    def update_trust(self, signed_update: bytes) -> tuple[int, str]:
        """Apply a signed trust update; returns (the new trust version, what changed)."""
        reply = self._call(TrustUpdateRequest(signed_update))
        if not isinstance(reply, TrustReply):
            raise self._unexpected(reply)
        return reply.version, reply.message

    def remote(self, signed_command: bytes) -> RemoteResult:
        """Carry a signed remote command to the agent, and its answer back. The client can
        neither forge nor replay one: the agent checks signature, target and number."""
        reply = self._call(RemoteRequest(signed_command))
        if not isinstance(reply, RemoteResult):
            raise self._unexpected(reply)
        return reply

    def audit(self) -> AuditInfo:
        reply = self._call(AuditRequest())
        if not isinstance(reply, AuditInfo):
            raise self._unexpected(reply)
        return reply

    def install(self, chunks: Iterable[bytes], size: int | None = None,
                progress: Progress | None = None) -> InstallResult:
        """Stream one SFUI to the agent. Refusals raise the agent's own error class; an
        exception from `chunks` aborts the session (the agent discards it) and propagates,
        unless the agent had refused the image already: then its refusal, the first cause."""
        report = progress or no_progress
        conn = self._connect()
        try:
            self._send(conn, [cbor.dumps(encode_request(InstallBegin(size)))])
            reply = self._reply(conn)
            if not isinstance(reply, ReadyReply):
                raise IpcError(f"agent answered install-begin with '{reply.reply}'")
            done = self._stream(conn, chunks, size, report)
            self._send(conn, [cbor.dumps(encode_request(InstallEnd()))])
            # The agent answers after it has flushed the slot to storage: allow for that.
            final = self._reply(conn, self.timeout + done / FLUSH_RATE)
            if not isinstance(final, InstallResult):
                raise self._unexpected(final)
            return final
        finally:
            conn.close()

    # --- plumbing ----------------------------------------------------------------------------

    def _connect(self) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise IpcError(f"cannot reach the agent at {self.socket_path}: "
                           f"{exc.strerror or exc}") from None
        return Connection(sock, self.timeout)

    def _call(self, request: Request) -> Reply:
        conn = self._connect()
        try:
            self._send(conn, [cbor.dumps(encode_request(request))])
            return self._reply(conn)
        finally:
            conn.close()

    def _status_call(self, request: Request) -> AgentStatus:
        reply = self._call(request)
        if not isinstance(reply, StatusReply):
            raise self._unexpected(reply)
        return reply.status

    def _reply(self, conn: Connection, timeout: float | None = None) -> Reply:
        reply = decode_reply(conn.recv(timeout))
        if isinstance(reply, ErrorReply):
            raise reply.to_exception()
        return reply

    def _stream(self, conn: Connection, chunks: Iterable[bytes], size: int | None,
                report: Progress) -> int:
        """Send `chunks` as chunk messages, batched (see _Batch); return the bytes sent."""
        done = 0
        batch = _Batch()

        def flush() -> None:
            nonlocal done
            done += batch.held
            self._send(conn, chunk_frame(*batch.take()))
            report(done, size if size is not None else done)

        try:
            for piece in _split(chunks, MAX_CHUNK):
                if conn.readable():  # the agent only speaks early to refuse
                    raise self._unexpected(self._reply(conn))
                if batch.held + len(piece) > MAX_CHUNK:
                    flush()
                batch.add(piece)
                # The first piece goes at once: the agent reads the envelope's header from it
                # and can refuse before the rest is downloaded.
                if done == 0 or batch.due():
                    flush()
        except SfuError:
            refusal = self._refusal(conn)
            if refusal is not None:  # the agent refused the image before the source failed
                raise refusal from None
            raise
        if batch.held:
            flush()
        return done

    def _send(self, conn: Connection, parts: list[bytes]) -> None:
        try:
            conn.send_parts(parts)
        except IpcError:
            # The agent may have refused and closed before we sent (busy at its connection
            # cap, or an install refused mid-stream): its reason is waiting to be read.
            raise self._unexpected(self._reply(conn)) from None

    def _refusal(self, conn: Connection) -> SfuError | None:
        """The agent's refusal of the image, if it has sent one; not its complaint about the
        session (an IpcError: e.g. it timed out waiting for the next chunk, the source's
        fault), nor a connection it closed."""
        if not conn.readable():
            return None
        try:
            self._reply(conn)
        except IpcError:
            return None
        except SfuError as refusal:
            return refusal
        return None

    @staticmethod
    def _unexpected(reply: Reply) -> IpcError:
        return IpcError(f"unexpected '{reply.reply}' reply from the agent")


class _Batch:
    """Pieces held back to travel in one chunk message (fewer, larger frames: each frame
    costs both sides a fixed overhead). Held until COALESCE_BYTES arrived, or for at most
    COALESCE_SECONDS from the first held piece (checked as pieces arrive; the source's own
    read timeout bounds the wait for the next one), so a slow source never leaves bytes
    waiting long while the agent's per-message timeout runs."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.held = 0
        self._since = 0.0

    def add(self, piece: bytes) -> None:
        if not self.pieces:
            self._since = time.monotonic()
        self.pieces.append(piece)
        self.held += len(piece)

    def due(self) -> bool:
        return (self.held >= COALESCE_BYTES
                or time.monotonic() - self._since >= COALESCE_SECONDS)

    def take(self) -> list[bytes]:
        pieces, self.pieces, self.held = self.pieces, [], 0
        return pieces


def _split(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Pass chunks through, cut to at most `limit` bytes; drop empty ones."""
    for piece in chunks:
        for start in range(0, len(piece), limit):
            yield piece[start:start + limit] if len(piece) > limit else piece
