"""The client's job: find the newest image for this device and stream it to the agent.

The agent is a parameter (anything with `.status()` and `.install(chunks, size, progress)`,
e.g. `sfupdate.formats.ipc.client.AgentClient`), so this logic runs the same against the real agent
and against a test verifier. The client only selects and transports: the agent decides.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from sfupdate.errors import (
    AuthenticationError,
    DowngradeError,
    DownloadError,
    FormatError,
    IpcError,
    PolicyError,
    SfuError,
    UsageError,
)
from sfupdate.progress import Progress
from sfupdate.richos.client.download import TransferPolicy, fetch
from sfupdate.richos.client.index import Candidate, RepositoryIndex
from sfupdate.richos.client.sources import CHUNK, FileSource


class DeviceStatus(Protocol):
    """What the client needs from the agent's status."""

    @property
    def vendor_id(self) -> str: ...

    @property
    def class_id(self) -> str: ...

    @property
    def running_sequence(self) -> int: ...

    @property
    def rollback_floor(self) -> int: ...

    @property
    def running_digest(self) -> str | None: ...


class Installed(Protocol):
    @property
    def slot(self) -> str: ...

    @property
    def sequence(self) -> int: ...

    @property
    def digest(self) -> str: ...


class Agent(Protocol):
    """The agent as the client sees it (sfupdate.formats.ipc.client.AgentClient fits)."""

    def status(self) -> DeviceStatus: ...

    def install(self, chunks: Iterable[bytes], size: int | None = None,
                progress: Progress | None = None) -> Installed: ...


@dataclass(frozen=True)
class CheckResult:
    """The device's state and the newest image the index offers it above its floor."""

    vendor_id: uuid.UUID
    class_id: uuid.UUID
    running_sequence: int
    rollback_floor: int
    available: Candidate | None

    def to_json(self) -> dict[str, Any]:
        return {"vendor_id": str(self.vendor_id), "class_id": str(self.class_id),
                "running_sequence": self.running_sequence,
                "rollback_floor": self.rollback_floor,
                "update_available": self.available is not None,
                "available": self.available.to_json() if self.available else None}


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise IpcError(f"the agent reported a malformed {what}: {value!r}") from None


def select(candidates: Iterable[Candidate], status: DeviceStatus) -> CheckResult:
    """The newest candidate for the device's vendor and class above what it runs and its
    rollback floor (the agent enforces this too; the client just avoids useless downloads)."""
    vendor, klass = _uuid(status.vendor_id, "vendor-id"), _uuid(status.class_id, "class-id")
    ranked = _ranked(candidates, vendor, klass,
                     max(status.running_sequence, status.rollback_floor), status.running_digest)
    best = ranked[0] if ranked else None
    return CheckResult(vendor, klass, status.running_sequence, status.rollback_floor, best)


def _ranked(candidates: Iterable[Candidate], vendor: uuid.UUID, klass: uuid.UUID,
            floor: int, running_digest: str | None) -> list[Candidate]:
    """The device's candidates above `floor`, best first: newest sequence, a delta whose base
    is the image the device runs before the full image, then by name. Deltas for other
    bases are left out (the agent would refuse them)."""
    mine = [c for c in candidates
            if c.vendor_id == vendor and c.class_id == klass and c.sequence > floor
            and (c.delta_base is None or c.delta_base == running_digest)]
    return sorted(mine, key=lambda c: (c.sequence, c.delta_base is not None, c.name),
                  reverse=True)


def saved_bytes(chosen: Candidate, candidates: Iterable[Candidate]) -> int:
    """What installing `chosen` saved over downloading the full image of its release."""
    if chosen.delta_base is None:
        return 0
    full = [c.length for c in candidates if c.delta_base is None and c.sequence ==
            chosen.sequence and (c.vendor_id, c.class_id) == (chosen.vendor_id, chosen.class_id)]
    return max(0, min(full) - chosen.length) if full else 0


def check(index: RepositoryIndex, agent: Agent) -> CheckResult:
    """Refresh the index and say what this device could install."""
    candidates = index.refresh()
    return select(candidates, agent.status())


#: Failures of one candidate that another may not share: the agent refused the image (format,
#: authenticity, policy) or its download failed after retries. A downgrade refusal is not
#: among them (every next candidate is older), nor are an unreachable or busy agent, its
#: storage or device state: they would fail every candidate alike.
FALLBACK_ERRORS: Final = (FormatError, AuthenticationError, PolicyError, DownloadError)


@dataclass(frozen=True)
class Skipped:
    """A candidate that was tried and not installed, and why."""

    candidate: Candidate
    error: SfuError


@dataclass(frozen=True)
class UpdateResult:
    check: CheckResult
    installed: Installed | None  # None: already up to date
    chosen: Candidate | None = None  # the candidate installed: check.available or a fallback
    skipped: tuple[Skipped, ...] = ()  # better candidates tried first, in order
    saved: int = 0  # bytes not downloaded thanks to a delta (against the full image)


def update(index: RepositoryIndex, agent: Agent, progress: Progress | None = None,
           log: Callable[[str], None] | None = None) -> UpdateResult:
    """Refresh, select, and stream the chosen SFUI into the agent while it downloads.

    If the agent refuses that image, or its download fails after retries, fall back to the
    next-best candidate of the index, and so on; `log` is told of each fallback. When every
    candidate fails, the first (best) candidate's error is raised.
    """
    candidates = index.refresh()
    status = agent.status()
    result = select(candidates, status)
    if result.available is None:
        return UpdateResult(result, None)
    ranked = _ranked(candidates, result.vendor_id, result.class_id,
                     max(result.running_sequence, result.rollback_floor),
                     status.running_digest)
    skipped: list[Skipped] = []
    for position, candidate in enumerate(ranked):
        try:
            installed = agent.install(index.stream(candidate), candidate.length, progress)
        except DowngradeError:
            raise
        except FALLBACK_ERRORS as exc:
            skipped.append(Skipped(candidate, exc))
            if log:
                after = ranked[position + 1] if position + 1 < len(ranked) else None
                log(f"{candidate.name} (sequence {candidate.sequence}) not installed: {exc}; "
                    + (f"falling back to {after.name} (sequence {after.sequence})" if after
                       else "no other candidate for this device"))
            continue
        saved = saved_bytes(candidate, ranked)
        if saved and log:
            log(f"{candidate.name} is a delta from the running image: {candidate.length} "
                f"bytes downloaded, {saved} fewer than the full image")
        return UpdateResult(result, installed, candidate, tuple(skipped), saved)
    raise skipped[0].error


def install_file(path: Path, agent: Agent, progress: Progress | None = None,
                 policy: TransferPolicy | None = None) -> Installed:
    """`update --from`: stream one SFUI from local media to the agent, which verifies it.

    A regular file is read with its size announced, resuming after a read error like any
    source; anything else (a pipe, /dev/stdin, a FIFO) goes to `install_stream`."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None
    with stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return install_stream(stream, str(path), agent, progress)
    source = FileSource(path.parent)
    size = source.size(path.name)
    chunks = fetch(source, path.name, size, policy or TransferPolicy())
    return agent.install(chunks, size, progress)


def install_stream(stream: BinaryIO, name: str, agent: Agent,
                   progress: Progress | None = None) -> Installed:
    """`update --from -`: stream one SFUI of unknown length (stdin, a pipe) to the agent, read
    once to its end (a pipe cannot be resumed). The agent bounds it: the envelope declares
    its payload's size."""
    return agent.install(_read_all(stream, name), None, progress)


def _read_all(stream: BinaryIO, name: str) -> Iterator[bytes]:
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    except OSError as exc:
        raise DownloadError(f"{name}: read failed: {exc.strerror or exc}") from None
