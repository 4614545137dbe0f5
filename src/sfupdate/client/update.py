"""The client's job: find the newest image for this device and stream it to the agent.

The agent is a parameter (anything with `.status()` and `.install(chunks, size, progress)`,
e.g. `sfupdate.ipc.client.AgentClient`), so this logic runs the same against the real agent
and against a test verifier. The client only selects and transports: the agent decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sfupdate.client.download import TransferPolicy, fetch
from sfupdate.client.index import Candidate, RepositoryIndex
from sfupdate.client.sources import FileSource
from sfupdate.errors import IpcError
from sfupdate.progress import Progress


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


class Installed(Protocol):
    @property
    def slot(self) -> str: ...

    @property
    def sequence(self) -> int: ...

    @property
    def digest(self) -> str: ...


class Agent(Protocol):
    """The agent as the client sees it (sfupdate.ipc.client.AgentClient fits)."""

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
    floor = max(status.running_sequence, status.rollback_floor)
    mine = [c for c in candidates
            if c.vendor_id == vendor and c.class_id == klass and c.sequence > floor]
    best = max(mine, key=lambda c: (c.sequence, c.name), default=None)
    return CheckResult(vendor, klass, status.running_sequence, status.rollback_floor, best)


def check(index: RepositoryIndex, agent: Agent) -> CheckResult:
    """Refresh the index and say what this device could install."""
    candidates = index.refresh()
    return select(candidates, agent.status())


@dataclass(frozen=True)
class UpdateResult:
    check: CheckResult
    installed: Installed | None  # None: already up to date


def update(index: RepositoryIndex, agent: Agent, progress: Progress | None = None
           ) -> UpdateResult:
    """Refresh, select, and stream the chosen SFUI into the agent while it downloads."""
    result = check(index, agent)
    if result.available is None:
        return UpdateResult(result, None)
    chosen = result.available
    installed = agent.install(index.stream(chosen), chosen.length, progress)
    return UpdateResult(result, installed)


def install_file(path: Path, agent: Agent, progress: Progress | None = None,
                 policy: TransferPolicy | None = None) -> Installed:
    """`update --from`: stream one SFUI from local media to the agent, which verifies it."""
    source = FileSource(path.parent)
    size = source.size(path.name)
    chunks = fetch(source, path.name, size, policy or TransferPolicy())
    return agent.install(chunks, size, progress)
