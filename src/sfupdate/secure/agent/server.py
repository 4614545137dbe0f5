"""The agent's service loop: a Unix socket, one thread per connection, one operation per
connection, one install session at a time.

A connection carries exactly one request (`status`, `confirm`, `reject-trial`, `check`,
`attest`, `policy-install`, `remote`, `audit`) or one install session (`install-begin`,
chunks, `install-end`); the agent answers and closes it. With a check interval, a thread
re-measures the device periodically (agent/integrity.py). Any protocol
violation gets an `IpcError` reply (when the peer still listens) and the connection is closed;
the agent itself never stops for a client's sake.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from sfupdate.errors import AgentBusyError, IpcError, SfuError, UsageError
from sfupdate.formats.ipc.framing import DEFAULT_TIMEOUT, Connection, PeerClosedError
from sfupdate.formats.ipc.messages import (
    AgentStatus,
    AttestRequest,
    AuditInfo,
    AuditRequest,
    CheckRequest,
    ConfirmRequest,
    ErrorReply,
    EventEntry,
    InstallBegin,
    InstallResult,
    IntegrityReport,
    PolicyInstallRequest,
    PolicyReply,
    ReadyReply,
    RegionResult,
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
    TrustRole,
    TrustUpdateRequest,
    encode_reply,
    read_request,
)
from sfupdate.secure.agent.actions import Audit, RemoteActions
from sfupdate.secure.agent.attest import attest
from sfupdate.secure.agent.confirm import confirm_intact
from sfupdate.secure.agent.device import Device
from sfupdate.secure.agent.install import install
from sfupdate.secure.agent.integrity import CheckResult, IntegrityMonitor
from sfupdate.secure.agent.stream import ChunkStream
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.records import Role
from sfupdate.secure.kernel import SecureState

#: Connections served at once; more get AgentBusyError straight away.
MAX_CONNECTIONS: Final = 16
#: Connections the kernel queues before the agent accepts them.
LISTEN_BACKLOG: Final = 128
_ACCEPT_POLL: Final = 0.2


class AgentServer:
    """Serves one board on one socket until `stop()`."""

    def __init__(self, device: Device, socket_path: Path, timeout: float = DEFAULT_TIMEOUT,
                 group_access: bool = False, check_interval: float | None = None) -> None:
        self.device = device
        self.monitor = IntegrityMonitor(device)
        self.actions = RemoteActions(device, self.monitor)
        self.check_interval = check_interval
        self.socket_path = socket_path
        self.timeout = timeout
        self._mode = 0o660 if group_access else 0o600
        self._install_lock = threading.Lock()
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._board_lock = contextlib.ExitStack()
        self._handlers: dict[type[Request], Callable[[Connection, Any], Reply]] = {
            StatusRequest: self._status, InstallBegin: self._install,
            ConfirmRequest: self._confirm, RejectTrialRequest: self._reject_trial,
            CheckRequest: self._check, AttestRequest: self._attest,
            PolicyInstallRequest: self._install_policy, RemoteRequest: self._remote,
            AuditRequest: self._audit, TrustUpdateRequest: self._update_trust}

    # --- lifecycle ---------------------------------------------------------------------------

    def bind(self) -> None:
        """Take the board (one agent per board: a second one is refused, naming the holder),
        then create the socket file with its final mode (never wider, not even briefly)."""
        self._board_lock.enter_context(self.device.board.agent_lock(
            f"pid {os.getpid()}, socket {self.socket_path}"))
        try:
            self._bind()
        except BaseException:
            self._board_lock.close()
            raise

    def _bind(self) -> None:
        _remove_stale_socket(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o777 & ~self._mode)
        try:
            listener.bind(str(self.socket_path))
        except OSError as exc:
            listener.close()
            raise UsageError(f"cannot create the socket {self.socket_path}: "
                             f"{exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, self._mode)
        listener.listen(LISTEN_BACKLOG)
        listener.settimeout(_ACCEPT_POLL)
        self._listener = listener

    def serve_forever(self) -> None:
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        if self.check_interval:
            threading.Thread(target=self.monitor.run_every,
                             args=(self.check_interval, self._stopping, _log),
                             daemon=True).start()
        try:
            while not self._stopping.is_set():
                try:
                    sock, _ = self._listener.accept()
                except TimeoutError:
                    continue
                self._dispatch(sock)
        finally:
            self._close()

    def stop(self) -> None:
        self._stopping.set()

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        self._board_lock.close()

    def _dispatch(self, sock: socket.socket) -> None:
        conn = Connection(sock, self.timeout)
        if not self._connections.acquire(blocking=False):
            self._refuse(conn, AgentBusyError("the agent is serving too many connections"))
            conn.close()
            return
        thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        thread.start()

    # --- one connection ----------------------------------------------------------------------

    def _serve(self, conn: Connection) -> None:
        try:
            self._answer(conn)
        finally:
            conn.close()
            self._connections.release()

    def _answer(self, conn: Connection) -> None:
        try:
            reply = self._handle(conn)
        except PeerClosedError:
            return
        except SfuError as exc:
            _log(f"refused: {type(exc).__name__}: {exc}")
            self._refuse(conn, exc)
            return
        except OSError as exc:  # the board's storage failed (disk full, I/O error...)
            _log(f"storage failure: {exc}")
            self._refuse(conn, SfuError(f"device storage failed: {exc.strerror or exc}"))
            return
        except Exception:  # a bug must not take the agent down; fail closed for this client
            _log("internal error:\n" + traceback.format_exc())
            self._refuse(conn, SfuError("internal agent error"))
            return
        with contextlib.suppress(IpcError):
            conn.send(encode_reply(reply))

    def _refuse(self, conn: Connection, exc: SfuError) -> None:
        with contextlib.suppress(IpcError):
            conn.send(encode_reply(ErrorReply.from_exception(exc)))
        # Half-close so the peer reads our reason and then sees end-of-stream.
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)

    def _handle(self, conn: Connection) -> Reply:
        request = read_request(conn)
        handler = self._handlers.get(type(request))
        if handler is None:  # chunk, install-end: only inside a session (agent/stream.py)
            raise IpcError(f"'{request.op}' is only allowed inside an install session")
        return handler(conn, request)

    # --- one handler per request: the request in, the reply out --------------------------------

    def _status(self, conn: Connection, request: StatusRequest) -> Reply:
        return StatusReply(agent_status(self.device.kernel.state()))

    def _install(self, conn: Connection, request: InstallBegin) -> Reply:
        with self._exclusive("an install session is already in progress"):
            conn.send(encode_reply(ReadyReply()))
            done = install(self.device, ChunkStream(conn, request.size))
            where = ("agent partition" if done.component == "agent" else "slot")
            _log(f"installed {done.component} sequence {done.sequence} into {where} "
                 f"{done.slot.value} (trial)")
            return InstallResult(done.slot.value, done.sequence, done.digest.hex())

    def _confirm(self, conn: Connection, request: ConfirmRequest) -> Reply:
        with self._exclusive("an install session is in progress"):
            return StatusReply(agent_status(confirm_intact(self.device.board,
                                                           self.device.kernel)))

    def _reject_trial(self, conn: Connection, request: RejectTrialRequest) -> Reply:
        with self._exclusive("an install session is in progress"):
            return StatusReply(agent_status(self.device.kernel.reject_trial()))

    def _check(self, conn: Connection, request: CheckRequest) -> Reply:
        return integrity_report(self.monitor.check())

    def _attest(self, conn: Connection, request: AttestRequest) -> Reply:
        return TokenReply(attest(self.device, request.nonce, self.monitor.measure_now(),
                                 int(time.time())))

    def _install_policy(self, conn: Connection, request: PolicyInstallRequest) -> Reply:
        sequence, regions = self.actions.install_policy(request.policy)
        _log(f"installed integrity policy {sequence} ({regions} regions)")
        return PolicyReply(sequence, regions)

    def _update_trust(self, conn: Connection, request: TrustUpdateRequest) -> Reply:
        # Exclusive with installs: the anchors an install session authenticated with, and
        # the trial it records, must not change under it.
        with self._exclusive("an install session is in progress"):
            version, message = self.actions.update_trust(request.update)
        _log(f"trust update applied: {message}")
        return TrustReply(version, message)

    def _remote(self, conn: Connection, request: RemoteRequest) -> Reply:
        # Exclusive with installs: a revert or revocation must not race a session.
        with self._exclusive("an install session is in progress"):
            answered = self.actions.execute(request.command)
        _log(f"remote command {answered.number} ({answered.action}): {answered.message}")
        return RemoteResult(answered.action, answered.number, answered.message,
                            answered.token)

    def _audit(self, conn: Connection, request: AuditRequest) -> Reply:
        return audit_info(self.actions.audit())

    @contextlib.contextmanager
    def _exclusive(self, busy_message: str) -> Iterator[None]:
        if not self._install_lock.acquire(blocking=False):
            raise AgentBusyError(busy_message)
        try:
            yield
        finally:
            self._install_lock.release()


def agent_status(state: SecureState) -> AgentStatus:
    """The wire form of the device's status."""
    boot = state.boot
    slots = {}
    for slot in Slot:
        entry = boot.slot(slot)
        image = entry.image
        slots[slot.value] = SlotReport(entry.status.value, image.sequence if image else None,
                                       image.digest.hex() if image else None)
    return AgentStatus(
        vendor_id=str(state.device.vendor_id), class_id=str(state.device.class_id),
        running_slot=boot.running.value, running_sequence=state.running_image.sequence,
        rollback_floor=boot.floor, trial_slot=boot.trial.value if boot.trial else None,
        trial_tries_left=boot.tries_left if boot.trial else None, slots=slots)


def integrity_report(result: CheckResult) -> IntegrityReport:
    """The wire form of an integrity check."""
    return IntegrityReport(tuple(RegionResult(r.region, r.measurement.result, r.measurement.detail,
                                              r.action) for r in result.regions),
                           result.events_total)


def audit_info(audit: Audit) -> AuditInfo:
    """The wire form of the security audit."""
    return AuditInfo(audit.last_command, audit.quarantine.hex() if audit.quarantine else None,
                     audit.policy_sequence, audit.total, audit.acknowledged, audit.time_floor,
                     tuple(EventEntry(e.number, e.first, e.last, e.count, e.kind, e.subject,
                                      e.detail, e.pinned) for e in audit.events),
                     audit.trust.version,
                     tuple(TrustRole(role.value, audit.trust.threshold(role),
                                     tuple(k.kid.hex() for k in audit.trust.keys(role)))
                           for role in Role))


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead agent; refuse to replace anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UsageError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise UsageError(f"an agent is already listening on {path}")


def _log(message: str) -> None:
    print(f"sfu-agent: {message}", file=sys.stderr, flush=True)
