"""A hostile world around one device, for the attack and fault suites.

`DeviceWorld` provisions a simulated board, runs the REAL agent process on a real Unix socket,
signs images in memory (also ones no honest author would make: other vendors, lying sizes,
no signature), and gives the attacker one-line tampering: flip a byte in a file, put an old
copy of secure storage back, revoke a trust anchor. `snapshot()` is everything that makes up
device state, so an attack story ends with `assert world.snapshot() == before`.

python-tuf's RepositorySimulator is the model: the tests read as stories, the world does the
plumbing.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.sign import COMPONENT, PAYLOAD_URI, build_manifest
from sfupdate.errors import AgentBusyError
from sfupdate.formats.ipc.client import AgentClient, InstallResult
from sfupdate.formats.sfui import Digest, TrustedKey, cbor, manifest_digest, suit
from sfupdate.formats.sfui.cose import Signer, sign1
from sfupdate.formats.sfui.model import Command, Common
from sfupdate.formats.sfui.writer import envelope_prefix
from sfupdate.keys.files import FileSigner
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import Power
from sfupdate.secure.board.records import RECORD_TRUST, BootRecord, Role, TrustAnchor, TrustStore
from sfupdate.secure.board.sim import SimBoard, open_board
from sfupdate.secure.boot.rom import boot
from sfupdate.secure.boot.stage2 import BootResult, boot_firmware
from sfupdate.secure.kernel import Kernel
from tests.agent.support import RunningAgent, start_agent, stop_agent
from tests.world import CLASS, FIRMWARE_V1, SLOT_SIZE, VENDOR, provision_board

CHUNK = 4096


def firmware(sequence: int, size: int = 24_000) -> bytes:
    """A recognisable payload for a sequence number."""
    line = f"firmware sequence {sequence} ".encode()
    return (line * (size // len(line) + 1))[:size]


def manifest(sequence: int, payload: bytes, *, vendor: uuid.UUID | None = VENDOR,
             klass: uuid.UUID | None = CLASS, image_size: int | None = None,
             digest: bytes | None = None) -> bytes:
    """Our manifest profile; vendor/class None leave that parameter out, image_size and digest
    may lie about the payload."""
    spec = ImageSpec(sequence, vendor or VENDOR, klass or CLASS)
    built = build_manifest(spec, digest or hashlib.sha256(payload).digest(),
                           len(payload) if image_size is None else image_size, None)
    if vendor is not None and klass is not None:
        return built.encode()
    params = dict(built.common.shared_sequence[0].argument)
    drop = ([suit.PARAM_VENDOR_ID] if vendor is None else []) + \
        ([suit.PARAM_CLASS_ID] if klass is None else [])
    for key in drop:
        del params[key]
    shared = (Command(suit.DIR_OVERRIDE_PARAMETERS, params),
              *(c for c in built.common.shared_sequence[1:]
                if not (vendor is None and c.code == suit.COND_VENDOR_ID)
                and not (klass is None and c.code == suit.COND_CLASS_ID)))
    return replace(built, common=Common((COMPONENT,), shared)).encode()


def auth_wrapper(manifest_bytes: bytes, *signers: Signer) -> bytes:
    """The authentication wrapper: the manifest digest and one COSE_Sign1 over it by each
    signer."""
    digest = Digest(manifest_digest(manifest_bytes)).encode()
    return cbor.dumps([digest, *(sign1(digest, signer) for signer in signers)])


def envelope(manifest_bytes: bytes, payload: bytes, signer: Signer | None, *,
             declared: int | None = None, auth: bytes | None = None) -> bytes:
    """An SFUI: manifest, signed by `signer` (None: no authentication wrapper at all, unless
    `auth` gives one, e.g. taken from another manifest), and the payload, whose byte-string
    head says `declared` bytes (default: the truth)."""
    members = {suit.ENV_MANIFEST: manifest_bytes}
    if signer is not None:
        auth = auth_wrapper(manifest_bytes, signer)
    if auth is not None:
        members[suit.ENV_AUTHENTICATION] = auth
    length = len(payload) if declared is None else declared
    return envelope_prefix(members, PAYLOAD_URI, length) + payload


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def payload_offset(image: bytes, payload: bytes) -> int:
    """Where the payload starts: everything before it is the envelope prefix."""
    offset = len(image) - len(payload)
    assert image[offset:] == payload
    return offset


@contextlib.contextmanager
def serving(tmp: Path, author: FileSigner, slot_size: int = SLOT_SIZE,
            payload_kek: bytes | None = None) -> Iterator[DeviceWorld]:
    """A provisioned device (see DeviceWorld.provisioned) with its agent serving, stopped and
    cleaned up afterwards."""
    sockets = Path(tempfile.mkdtemp(prefix="sfu-"))  # sun_path is short; tmp may not be
    device = DeviceWorld.provisioned(tmp, sockets, author, slot_size, payload_kek)
    device.start_agent()
    try:
        yield device
    finally:
        device.stop_agent()
        shutil.rmtree(sockets, ignore_errors=True)


@dataclass
class DeviceWorld:
    root: Path
    socket_dir: Path
    author: FileSigner  # the provisioned firmware anchor
    agent: RunningAgent | None = None
    _saved: list[Path] = field(default_factory=list)

    # --- the world ---------------------------------------------------------------------------

    @classmethod
    def provisioned(cls, tmp: Path, socket_dir: Path, author: FileSigner,
                    slot_size: int = SLOT_SIZE, payload_kek: bytes | None = None
                    ) -> DeviceWorld:
        """A board provisioned with sequence 1 confirmed in slot A, trusting `author` (and
        holding `payload_kek` for encrypted payloads, if given)."""
        root = tmp / "board"
        first = tmp / "v1.sfui"
        first.write_bytes(envelope(manifest(1, FIRMWARE_V1), FIRMWARE_V1, author))
        provision_board(root, first, [TrustedKey(author.public_key)], slot_size=slot_size,
                        payload_kek=payload_kek)
        return cls(root, socket_dir, author)

    def start_agent(self) -> RunningAgent:
        # An agent killed by a power cut leaves its socket file behind: the helper would take
        # it for the new agent's socket (the new agent itself would replace it, later).
        (self.socket_dir / "agent.sock").unlink(missing_ok=True)
        self.agent = start_agent(self.root, self.socket_dir)
        return self.agent

    def stop_agent(self) -> None:
        if self.agent is not None:
            stop_agent(self.agent)
            self.agent = None

    @property
    def running(self) -> RunningAgent:
        assert self.agent is not None, "the agent is not running"
        return self.agent

    def client(self, timeout: float = 10.0) -> AgentClient:
        return self.running.client(timeout)

    def board(self) -> SimBoard:
        """Library-level access to the board (another "process": its own power counter)."""
        return open_board(self.root, Power())

    # --- the author and the attacker's images --------------------------------------------------

    def image(self, sequence: int, payload: bytes | None = None, *,
              signer: Signer | bool | None = True, vendor: uuid.UUID | None = VENDOR,
              klass: uuid.UUID | None = CLASS) -> bytes:
        """An image signed by the provisioned author (signer=True), another key, or nobody
        (signer=None)."""
        body = firmware(sequence) if payload is None else payload
        key = self.author if signer is True else signer
        assert not isinstance(key, bool)
        return envelope(manifest(sequence, body, vendor=vendor, klass=klass), body, key)

    # --- the device ----------------------------------------------------------------------------

    def install(self, data: bytes, size: int | None = -1, chunk: int = CHUNK) -> InstallResult:
        """Stream `data` to the agent as the client would (size: the announced total)."""
        chunks = (data[i:i + chunk] for i in range(0, len(data), chunk))
        return self.client().install(chunks, size=len(data) if size == -1 else size)

    def install_when_idle(self, data: bytes, seconds: float = 5.0) -> InstallResult:
        """Install, retrying while the agent still winds down an abandoned session."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.install(data)
            except AgentBusyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def boot(self) -> BootResult:
        """A reboot: the ROM verifies the agent bundle, stage 2 selects and verifies a slot."""
        board = self.board()
        return boot(board, lambda _bundle: boot_firmware(board))

    def record(self) -> BootRecord:
        return Kernel(self.board().storage).state().boot

    def snapshot(self) -> dict[str, Any]:
        """Status as the agent reports it, and the hash of every file of the slots, their
        headers, secure storage and the hardware registers."""
        return self.running.snapshot()

    @contextlib.contextmanager
    def unchanged(self) -> Iterator[None]:
        """The block must leave the device exactly as it found it, and the agent alive."""
        before = self.snapshot()
        yield
        self.running.assert_alive()
        after = self.snapshot()
        assert after == before, f"device state changed: {_diff(before, after)}"

    def slot_bytes(self, slot: Slot) -> bytes:
        return (self.root / "slots" / f"{slot.value}.img").read_bytes()

    # --- the attacker's one-liners ---------------------------------------------------------------

    def flip_file(self, relative: str, offset: int, mask: int = 0x40) -> None:
        path = self.root / relative
        path.write_bytes(flip(path.read_bytes(), offset, mask))

    def save_secure_storage(self) -> Path:
        """Copy secure/ away (the attacker can read and write the flash it lives on)."""
        saved = self.root.parent / f"secure-copy-{len(self._saved)}"
        shutil.copytree(self.root / "secure", saved)
        self._saved.append(saved)
        return saved

    def restore_secure_storage(self, saved: Path) -> None:
        """Put an old copy back, renamed to the file name the counter register expects."""
        counter = self.board().storage.write_counter
        shutil.rmtree(self.root / "secure")
        shutil.copytree(saved, self.root / "secure")
        (old,) = (self.root / "secure").glob("store-*")
        old.rename(self.root / "secure" / f"store-{counter}")

    def trust_store(self) -> TrustStore:
        return TrustStore.decode(self.board().storage.read(RECORD_TRUST) or b"")

    def _save_trust(self, store: TrustStore) -> None:
        self.board().storage.write({RECORD_TRUST: store.encode()})

    def add_firmware_anchor(self, key: TrustedKey) -> None:
        store = self.trust_store()
        anchor = TrustAnchor.from_key(Role.FIRMWARE, key)
        self._save_trust(replace(store, anchors=(*store.anchors, anchor),
                                 version=store.version + 1))

    def revoke(self, key: TrustedKey) -> None:
        """Mark the anchor of `key` revoked in secure storage (library level)."""
        store = self.trust_store()
        anchors = tuple(replace(a, revoked=True) if a.kid == key.kid else a
                        for a in store.anchors)
        assert anchors != store.anchors, "no such anchor"
        self._save_trust(replace(store, anchors=anchors, version=store.version + 1))


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    status = {k: (v, after["status"].get(k)) for k, v in before["status"].items()
              if after["status"].get(k) != v}
    files = sorted(set(before["files"]).symmetric_difference(after["files"])
                   | {k for k, v in before["files"].items() if after["files"].get(k) != v})
    return {"status": status, "files": files}


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB), thread and open-file counts of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kib": int(fields["VmRSS"].split()[0]),
            "hwm_kib": int(fields["VmHWM"].split()[0]),
            "threads": int(fields["Threads"]),
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir()))}
