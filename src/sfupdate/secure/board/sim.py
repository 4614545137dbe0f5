"""The `sim` backend: a board is a directory of files (layout in docs/board.md).

Every mutating operation goes through the board's `Power` (board/power.py), so tests can
cut power at any of them. The "hardware" parts (fuses, the RPMB write-counter register) are
files too; the threat model treats them as what they model: an attacker can copy and restore
the secure storage files but cannot roll back a fuse or the counter register.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sfupdate.errors import (
    DeviceStateError,
    SfuError,
    StorageIntegrityError,
    TooLargeError,
    UsageError,
)
from sfupdate.formats.sfui import cbor
from sfupdate.formats.sfui.components import COMPONENT_NAME, MAX_COMPONENTS
from sfupdate.secure.board.flock import ReentrantFlock, agent_lock
from sfupdate.secure.board.hal import Fuse, Slot
from sfupdate.secure.board.power import POWER_CUT_ENV, Power
from sfupdate.secure.board.slotio import PoweredSlotWriter, SlotImageReader

BOARD_FILE: Final = "board.json"
BOARD_FORMAT: Final = "sfupdate-sim-board"
POWER_KNOB: Final = "power-cut-at"
AGENT_LOCK: Final = "agent.lock"
MAX_RECORD: Final = 64 * 1024
MAX_STORE: Final = 1024 * 1024
MAX_HEADER: Final = 2 * 1024 * 1024
MAX_AGENT: Final = 64 * 1024 * 1024
MAX_FUSE: Final = 64
MAX_KEY: Final = 1024
#: The one component of a board created without a component list.
DEFAULT_COMPONENT: Final = "firmware"
_RECORD_NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")
_MAC_CONTEXT: Final = b"sfupdate rpmb mac v1"


def _read_limited(path: Path, limit: int, what: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        return None
    if len(data) > limit:
        raise StorageIntegrityError(f"{what} is larger than any the board writes")
    return data


# --- fuses ----------------------------------------------------------------------------------


class SimFuses:
    """One file per fuse under hw/otp/. Burning is write-new + fsync + link (fails if the fuse
    exists, so it is write-once even between processes) + fsync directory."""

    def __init__(self, root: Path, power: Power) -> None:
        self._dir = root / "hw" / "otp"
        self._power = power

    def read(self, fuse: Fuse) -> bytes | None:
        return _read_limited(self._dir / fuse.value, MAX_FUSE, f"fuse {fuse.value}")

    def burn(self, fuse: Fuse, value: bytes) -> None:
        if not 0 < len(value) <= MAX_FUSE:
            raise UsageError(f"fuse {fuse.value} takes 1..{MAX_FUSE} bytes")
        target = self._dir / fuse.value
        if target.exists():
            raise DeviceStateError(f"fuse {fuse.value} is already burned (OTP is write-once)")
        tmp = self._dir / f".{fuse.value}.tmp"
        self._power.write_new(tmp, value)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise DeviceStateError(f"fuse {fuse.value} is already burned "
                                   "(OTP is write-once)") from None
        finally:
            tmp.unlink(missing_ok=True)
        self._power.fsync_dir(self._dir)


# --- secure storage -------------------------------------------------------------------------


class SimStorage:
    """RPMB-like secure storage.

    The whole set of records is one file, `secure/store-<counter>`, holding
    CBOR [body, mac] with body = CBOR [counter, {name: bytes}] and
    mac = HMAC-SHA256(K, context || body), K = HKDF-SHA256(device secret, info=context).
    The hardware write-counter register, `hw/rpmb-counter`, holds CBOR [counter, sha256(file)].
    A write stores `store-<n+1>` (write, fsync, fsync dir) and then commits by replacing the
    register with [n+1, digest] in one rename: the RPMB device's atomic write-and-increment.
    A read accepts only the file the register names, with that digest, a valid MAC and the
    same counter inside, so an old copy of secure/ put back is a StorageIntegrityError.
    """

    def __init__(self, root: Path, secret: bytes, power: Power) -> None:
        self._dir = root / "secure"
        self._register = root / "hw" / "rpmb-counter"
        self._power = power
        self._key = HKDF(hashes.SHA256(), 32, salt=None, info=_MAC_CONTEXT).derive(secret)
        self.lock = ReentrantFlock(root / ".lock")

    def _mac(self, body: bytes) -> bytes:
        mac = HMAC(self._key, hashes.SHA256())
        mac.update(_MAC_CONTEXT + body)
        return mac.finalize()

    def _read_register(self) -> tuple[int, bytes]:
        raw = _read_limited(self._register, 128, "the RPMB counter register")
        if raw is None:
            if any(self._dir.glob("store-*")):
                raise StorageIntegrityError("secure storage exists but the hardware write "
                                            "counter does not: storage was planted")
            return 0, b""
        try:
            counter, digest = cbor.loads(raw, "RPMB counter register")
        except (SfuError, ValueError, TypeError):
            raise StorageIntegrityError("the RPMB counter register is unreadable") from None
        if not isinstance(counter, int) or not isinstance(digest, bytes):
            raise StorageIntegrityError("the RPMB counter register is unreadable")
        return counter, digest

    def _load(self) -> tuple[int, dict[str, bytes]]:
        counter, digest = self._read_register()
        if counter == 0:
            return 0, {}
        raw = _read_limited(self._dir / f"store-{counter}", MAX_STORE, "secure storage")
        if raw is None:
            raise StorageIntegrityError(f"secure storage for write counter {counter} is missing")
        if not hmac.compare_digest(hashlib.sha256(raw).digest(), digest):
            raise StorageIntegrityError("secure storage does not match the hardware write "
                                        "counter: an old or altered copy was put back")
        try:
            body, mac = cbor.loads(raw, "secure storage")
            if not hmac.compare_digest(self._mac(body), mac):
                raise StorageIntegrityError("secure storage MAC does not verify")
            stored_counter, records = cbor.loads(body, "secure storage body")
        except (SfuError, ValueError, TypeError) as exc:
            if isinstance(exc, StorageIntegrityError):
                raise
            raise StorageIntegrityError(f"secure storage is malformed: {exc}") from None
        if stored_counter != counter or not isinstance(records, dict):
            raise StorageIntegrityError("secure storage counter does not match the hardware "
                                        "write counter (replayed write)")
        return counter, records

    @property
    def write_counter(self) -> int:
        return self._read_register()[0]

    def read(self, name: str) -> bytes | None:
        with self.lock():
            value = self._load()[1].get(name)
        return value if isinstance(value, bytes) else None

    def names(self) -> list[str]:
        with self.lock():
            return sorted(self._load()[1])

    def read_all(self) -> dict[str, bytes]:
        with self.lock():
            records = self._load()[1]
        return {k: v for k, v in records.items() if isinstance(v, bytes)}

    def write(self, changes: Mapping[str, bytes | None]) -> None:
        for name, value in changes.items():
            if not _RECORD_NAME.fullmatch(name):
                raise UsageError(f"bad secure storage record name {name!r}")
            if value is not None and len(value) > MAX_RECORD:
                raise UsageError(f"secure storage record {name} is too large")
        with self.lock():
            counter, records = self._load()
            for name, value in changes.items():
                if value is None:
                    records.pop(name, None)
                else:
                    records[name] = value
            new = counter + 1
            body = cbor.dumps([new, records])
            raw = cbor.dumps([body, self._mac(body)])
            if len(raw) > MAX_STORE:
                raise UsageError("secure storage is full")
            path = self._dir / f"store-{new}"
            self._power.write_new(path, raw)
            self._power.fsync_dir(self._dir)
            self._power.write_file(self._register,
                                   cbor.dumps([new, hashlib.sha256(raw).digest()]))
            for stale in self._dir.glob("store-*"):
                if stale.name != path.name:
                    self._power.unlink(stale)


# --- slots ----------------------------------------------------------------------------------


class SimSlotWriter(PoweredSlotWriter):
    """Writes the image into its file; finish() fsyncs it, then stores the SFUI header in its
    own file (atomically: write-new, rename)."""

    def __init__(self, power: Power, image: Path, header_path: Path, header: bytes,
                 size: int) -> None:
        super().__init__(power, os.open(image, os.O_WRONLY), size)
        self._header_path = header_path
        self._header = header

    def finish(self) -> None:
        fd = self._open_fd()
        self._power.fsync(fd)
        self._close()
        self._power.write_file(self._header_path, self._header)


class SimSlots:
    """slots/A.img and slots/B.img (fixed size), and each one's SFUI header slots/X.hdr; the
    same in slots/NAME/ for each component after the first."""

    def __init__(self, directory: Path, size: int, power: Power) -> None:
        self._dir = directory
        self._size = size
        self._power = power

    @property
    def size(self) -> int:
        return self._size

    def _image(self, slot: Slot) -> Path:
        return self._dir / f"{slot.value}.img"

    def _header(self, slot: Slot) -> Path:
        return self._dir / f"{slot.value}.hdr"

    def writer(self, slot: Slot, header: bytes) -> SimSlotWriter:
        if len(header) > MAX_HEADER:
            raise TooLargeError("SFUI header is too large for the slot header area")
        self._power.unlink(self._header(slot))
        self._power.fsync_dir(self._dir)
        return SimSlotWriter(self._power, self._image(slot), self._header(slot), header,
                             self._size)

    def header(self, slot: Slot) -> bytes | None:
        return _read_limited(self._header(slot), MAX_HEADER, f"slot {slot.value} header")

    def image_reader(self, slot: Slot, size: int) -> SlotImageReader:
        if not 0 <= size <= self._size:
            raise TooLargeError(f"cannot read {size} bytes from a {self._size}-byte slot")
        return SlotImageReader(os.open(self._image(slot), os.O_RDONLY), size, slot.value)

    def read(self, slot: Slot, length: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        if not 0 <= length <= self._size:
            raise TooLargeError(f"cannot read {length} bytes from a {self._size}-byte slot")
        with open(self._image(slot), "rb") as f:
            remaining = length
            while remaining:
                chunk = f.read(min(chunk_size, remaining))
                if not chunk:
                    raise DeviceStateError(f"slot {slot.value} is shorter than its size")
                remaining -= len(chunk)
                yield chunk


# --- agent partition -----------------------------------------------------------


class SimAgentPartition:
    """agent/A and agent/B: each an `agent.sfui` and the `signer.der` that signed it."""

    def __init__(self, root: Path, power: Power) -> None:
        self._dir = root / "agent"
        self._power = power

    def _bundle(self, slot: Slot) -> Path:
        return self._dir / slot.value / "agent.sfui"

    def _key(self, slot: Slot) -> Path:
        return self._dir / slot.value / "signer.der"

    def writer(self, slot: Slot, signer_spki: bytes) -> SimSlotWriter:
        if len(signer_spki) > MAX_KEY:
            raise TooLargeError("agent signer key is too large")
        self._bundle(slot).parent.mkdir(parents=True, exist_ok=True)
        self._power.unlink(self._key(slot))
        self._power.write_new(self._bundle(slot), b"")  # a shorter bundle leaves no tail
        self._power.fsync_dir(self._bundle(slot).parent)
        return SimSlotWriter(self._power, self._bundle(slot), self._key(slot), signer_spki,
                             MAX_AGENT)

    def signer_key(self, slot: Slot) -> bytes | None:
        return _read_limited(self._key(slot), MAX_KEY, "agent signer key")

    def stream(self, slot: Slot, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        path = self._bundle(slot)
        if not path.exists():
            raise DeviceStateError(f"agent partition {slot.value} is empty")
        with open(path, "rb") as f:
            total = 0
            while chunk := f.read(chunk_size):
                total += len(chunk)
                if total > MAX_AGENT:
                    raise TooLargeError("agent partition holds more than any bundle")
                yield chunk


# --- the board ------------------------------------------------------------------------------


class SimBoard:
    """A simulated board in a directory. Use `create_board` / `open_board`."""

    def __init__(self, root: Path, components: Sequence[tuple[str, int]], power: Power) -> None:
        self.root = root
        self.power = power
        self.fuses = SimFuses(root, power)
        self.components = {name: SimSlots(component_dir(root, i, name), size, power)
                           for i, (name, size) in enumerate(components)}
        self.slots = next(iter(self.components.values()))
        self.agent = SimAgentPartition(root, power)
        self._storage: SimStorage | None = None

    @property
    def storage(self) -> SimStorage:
        if self._storage is None:
            secret = self.fuses.read(Fuse.DEVICE_SECRET)
            if secret is None:
                raise DeviceStateError(f"{self.root}: the board is not provisioned "
                                       "(no device secret fused)")
            self._storage = SimStorage(self.root, secret, self.power)
        return self._storage

    def agent_lock(self, holder: str) -> AbstractContextManager[None]:
        return agent_lock(self.root / AGENT_LOCK, holder, str(self.root))

    @property
    def identity_public_path(self) -> Path:
        return self.root / "device-id.pub.pem"


def component_dir(root: Path, index: int, name: str) -> Path:
    """Where a component's slots are: the first component's in slots/, the others' in
    slots/NAME/ (so a board of one component is laid out as it always was)."""
    return root / "slots" if index == 0 else root / "slots" / name


def create_board(root: Path, slot_size: int,
                 components: Sequence[tuple[str, int]] | None = None) -> SimBoard:
    """Make a blank board: empty fuses, empty storage, and for each component (name, size)
    two zero-filled slots of its size. Without `components`: one, "firmware", of slot_size."""
    components = list(components or [(DEFAULT_COMPONENT, slot_size)])
    _check_components(components)
    if root.exists() and any(root.iterdir()):
        raise UsageError(f"{root} exists and is not empty")
    for sub in ("hw/otp", "secure", "slots", "agent/A", "agent/B"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for index, (name, size) in enumerate(components):
        directory = component_dir(root, index, name)
        directory.mkdir(exist_ok=True)
        for slot in Slot:
            with open(directory / f"{slot.value}.img", "wb") as f:
                f.truncate(size)
                os.fsync(f.fileno())
    meta: dict[str, object] = {"format": BOARD_FORMAT, "version": 1,
                               "slot_size": components[0][1]}
    if components != [(DEFAULT_COMPONENT, components[0][1])]:
        meta["components"] = [{"name": name, "size": size} for name, size in components]
    Power().write_file(root / BOARD_FILE, json.dumps(meta).encode())
    return open_board(root)


def _check_components(components: Sequence[tuple[str, int]]) -> None:
    if not 1 <= len(components) <= MAX_COMPONENTS:
        raise UsageError(f"a board has 1 to {MAX_COMPONENTS} components")
    for name, size in components:
        if not isinstance(name, str) or not COMPONENT_NAME.fullmatch(name):
            raise UsageError(f"component name {name!r}: 1-32 of a-z, 0-9 and '-', starting "
                             "with a letter")
        if not isinstance(size, int) or size <= 0 or size % 4096:
            raise UsageError(f"component {name}: the slot size must be a positive multiple "
                             "of 4 KiB")
    if len({name for name, _ in components}) != len(components):
        raise UsageError("a component is named twice")


def _components(root: Path, meta: dict[str, Any], size: int) -> list[tuple[str, int]]:
    listed = meta.get("components")
    if listed is None:
        return [(DEFAULT_COMPONENT, size)]
    try:
        components = [(entry["name"], entry["size"]) for entry in listed]
    except (TypeError, KeyError):
        raise UsageError(f"{root}/{BOARD_FILE}: bad component list") from None
    _check_components(components)
    return components


def open_board(root: Path, power: Power | None = None) -> SimBoard:
    """Open a board directory. Without `power`, the `power-cut-at` knob file (an integer N)
    arms a one-shot cut that makes the process exit at its Nth mutating operation."""
    try:
        meta = json.loads((root / BOARD_FILE).read_text())
    except FileNotFoundError:
        raise UsageError(f"{root} is not a board (no {BOARD_FILE}); "
                         "create one with `sfu board create`") from None
    except ValueError:
        raise UsageError(f"{root}/{BOARD_FILE} is not valid JSON") from None
    size = meta.get("slot_size") if isinstance(meta, dict) else None
    if meta.get("format") != BOARD_FORMAT or not isinstance(size, int) or size <= 0:
        raise UsageError(f"{root}/{BOARD_FILE} does not describe a simulated board")
    components = _components(root, meta, size)
    if power is None:
        power = Power(_take_knob(root), exit_on_cut=True)
    return SimBoard(root, components, power)


def _take_knob(root: Path) -> int | None:
    """Read and remove the one-shot `power-cut-at` knob; else the SFU_SIM_POWER_CUT_AT
    environment variable (how the boot ROM hands an armed cut to stage 2)."""
    knob = root / POWER_KNOB
    try:
        text, where = knob.read_text().strip(), str(knob)
        knob.unlink(missing_ok=True)
    except FileNotFoundError:
        text, where = os.environ.get(POWER_CUT_ENV, ""), POWER_CUT_ENV
        if not text:
            return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{where} must hold a positive integer")
    return int(text)
