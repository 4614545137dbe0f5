"""The board hardware abstraction: what the agent and the boot code need, and nothing more.

A board has four parts (see docs/board.md):

* OTP fuses (`Fuses`): write-once fields, the root of trust.
* Replay-protected secure storage (`SecureStorage`): named records, every write authenticated
  and counted by the hardware, so an old copy put back is detected (StorageIntegrityError).
* Two firmware slots A/B of a fixed size (`Slots`), each with the stored SFUI header of the
  image in it, so the boot can check the slot against its signed manifest; a board of several
  components (`components`) has such a pair per component, installed and booted as a set.
* The agent partition (the signed agent bundle the boot ROM verifies).

Only the agent and the boot code open these. Everything they decide on (boot control, the
rollback floor, trust anchors, the measured boot, the event log...) is a record in secure
storage, changed only through `sfupdate.secure.kernel.Kernel`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Protocol

from sfupdate.secure.board.slotio import SlotImageReader


class Slot(enum.Enum):
    """One of the two firmware slots."""

    A = "A"
    B = "B"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A


class Fuse(enum.Enum):
    """The OTP fields. Each can be burned exactly once."""

    ROOT_KEY_HASH = "root-key-hash"  # SHA-256 of the SPKI DER of the key that signs the agent
    # 32 random bytes; the root of every device key. A backend may keep it inside a security
    # chip that never reveals it (linux: a TPM key; `read` then gives its public name).
    DEVICE_SECRET = "device-secret"
    LIFECYCLE = "lifecycle"  # b"provisioned" once provisioning completed


LIFECYCLE_PROVISIONED = b"provisioned"


class Fuses(Protocol):
    """Write-once fuses."""

    def read(self, fuse: Fuse) -> bytes | None:
        """The fused value, or None while the fuse is blank."""
        ...

    def burn(self, fuse: Fuse, value: bytes) -> None:
        """Fuse a value; raises DeviceStateError if that fuse is already burned."""
        ...


class SecureStorage(Protocol):
    """RPMB-like storage of small named records (each at most MAX_RECORD bytes).

    Every read verifies the MAC and the hardware write counter and raises
    StorageIntegrityError if the storage was tampered with or rolled back.
    """

    def read(self, name: str) -> bytes | None:
        """The record's bytes, or None if there is no such record."""
        ...

    def names(self) -> list[str]:
        ...

    def read_all(self) -> Mapping[str, bytes]:
        """Every record, from ONE authenticated read (a consistent snapshot)."""
        ...

    def write(self, changes: Mapping[str, bytes | None]) -> None:
        """Apply all changes in ONE atomic, authenticated write (None deletes a record).

        After a power cut either all changes are visible or none is."""
        ...

    def lock(self) -> AbstractContextManager[None]:
        """Exclusive access across processes for a read-modify-write (re-entrant within one
        process). `write` and `read` take it themselves."""
        ...

    @property
    def write_counter(self) -> int:
        """The hardware's monotonic write counter (for status and tests)."""
        ...


class SlotWriter(Protocol):
    """Streams one image into a slot. Nothing is bootable until the agent records the slot as
    a trial in boot control, so a torn or abandoned write is harmless."""

    @property
    def written(self) -> int:
        ...

    def write(self, chunk: bytes) -> None:
        """Append a chunk; raises TooLargeError beyond the slot size."""
        ...

    def finish(self) -> None:
        """Flush and fsync the image and its header; the slot content is then durable."""
        ...

    def abort(self) -> None:
        """Stop writing; the slot content is undefined (and must stay marked invalid)."""
        ...


class Slots(Protocol):
    """The two fixed-size firmware slots and the SFUI header stored with each."""

    @property
    def size(self) -> int:
        """Bytes per slot."""
        ...

    def writer(self, slot: Slot, header: bytes) -> AbstractContextManager[SlotWriter]:
        """Open `slot` for writing an image whose SFUI header (the envelope up to the payload
        bytes) is `header`. The old header is removed first; the new one is stored by finish().
        Leaving the context without finish() aborts."""
        ...

    def header(self, slot: Slot) -> bytes | None:
        """The stored SFUI header of the image in `slot` (unverified), or None."""
        ...

    def read(self, slot: Slot, length: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the first `length` bytes of the slot."""
        ...

    def image_reader(self, slot: Slot, size: int) -> SlotImageReader:
        """The slot's first `size` bytes opened for positioned reads (a delta's base image);
        use it as a context manager."""
        ...


class AgentPartition(Protocol):
    """Two agent partitions A/B, each holding a signed agent bundle (an SFUI whose payload is
    a zipapp) and the public key that signed it. Which one runs, and which is on trial, is
    secure state (the kernel's `agent` record), not something the partitions say."""

    def writer(self, slot: Slot, signer_spki: bytes) -> AbstractContextManager[SlotWriter]:
        """Open partition `slot` for a new bundle, streamed in whole (SFUI bytes in order);
        finish() makes it and the signer key (SPKI DER) durable. The boot ROM trusts that key
        only if its SHA-256 matches the ROOT_KEY_HASH fuse."""
        ...

    def signer_key(self, slot: Slot) -> bytes | None:
        """The stored signer public key (SPKI DER, unverified), or None."""
        ...

    def stream(self, slot: Slot, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """The stored bundle's bytes, in chunks (raises DeviceStateError if none)."""
        ...


class Board(Protocol):
    """A whole board. `storage` raises DeviceStateError before the device secret is fused."""

    @property
    def fuses(self) -> Fuses:
        ...

    @property
    def storage(self) -> SecureStorage:
        ...

    @property
    def slots(self) -> Slots:
        """The slots of the board's first component (on most boards its only one)."""
        ...

    @property
    def components(self) -> Mapping[str, Slots]:
        """The board's components in order, each a pair of slots A/B of its own size; the
        first one's is `slots`. A slot A or B of the board holds one image of each."""
        ...

    @property
    def agent(self) -> AgentPartition:
        ...

    def agent_lock(self, holder: str) -> AbstractContextManager[None]:
        """Held by the one agent that serves this board, for its whole life: entering it
        while another agent holds it raises AgentBusyError naming that holder (`holder` is
        how this agent describes itself: its pid and socket)."""
        ...
