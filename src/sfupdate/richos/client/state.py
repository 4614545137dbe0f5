"""The client's state directory: the index metadata it has verified for one repository.

python-tuf's ngclient keeps there the trusted root (`root.json`, and each root version it
accepted in `root_history/`) and the last verified timestamp, snapshot and targets: that is
what makes an older index detectable. This module decides what a `--trusted-root` given on
the command line does to it (it wins: a state started from another root is discarded), lets
a failed first run leave nothing behind, and describes the state (`sfu client status`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: Everything ngclient writes in a state directory (we fetch targets ourselves).
METADATA_FILES: Final = ("root.json", "timestamp.json", "snapshot.json", "targets.json")
ROOT_HISTORY: Final = "root_history"


def root_version(data: bytes) -> int | None:
    """The `signed.version` of root metadata bytes; None if they are not root metadata."""
    try:
        version = json.loads(data)["signed"]["version"]
    except (ValueError, TypeError, KeyError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def started_from(state_dir: Path, root: bytes) -> bool:
    """Whether the trusted state in `state_dir` is consistent with `root`: the root of that
    version is the one it holds (in its root history, or as its current root.json)."""
    version = root_version(root)
    candidates = [state_dir / "root.json"]
    if version is not None:
        candidates.insert(0, state_dir / ROOT_HISTORY / f"{version}.root.json")
    for path in candidates:
        try:
            if path.read_bytes() == root:
                return True
        except OSError:
            continue
    return False


def discard(state_dir: Path, remove_dir: bool = False) -> None:
    """Remove what ngclient stored in `state_dir` (only that: the directory may be one the
    user named); with `remove_dir`, the directory too if that leaves it empty."""
    for name in METADATA_FILES:
        (state_dir / name).unlink(missing_ok=True)
    history = state_dir / ROOT_HISTORY
    if history.is_dir():
        for item in history.glob("*.root.json"):
            item.unlink()
        _rmdir_if_empty(history)
    if remove_dir:
        _rmdir_if_empty(state_dir)


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (someone else's files), or already gone
        path.rmdir()


@dataclass(frozen=True)
class Role:
    """One stored metadata file: its version and expiry (ISO 8601, UTC)."""

    version: int
    expires: str


@dataclass(frozen=True)
class StateReport:
    """What `sfu client status` shows for one repository."""

    state_dir: Path
    root: Role | None  # None: nothing trusted yet (the next run needs --trusted-root)
    index: Role | None  # targets: what the last successful refresh verified

    def to_json(self) -> dict[str, Any]:
        def role(r: Role | None) -> dict[str, Any] | None:
            return None if r is None else {"version": r.version, "expires": r.expires}

        return {"state_dir": str(self.state_dir), "trusted": self.root is not None,
                "root": role(self.root), "index": role(self.index)}


def describe(state_dir: Path) -> StateReport:
    """The stored root and index versions; the signatures were checked when they were
    stored (this reads them back without checking again)."""
    return StateReport(state_dir, _role(state_dir / "root.json"),
                       _role(state_dir / "targets.json"))


def _role(path: Path) -> Role | None:
    try:
        signed = json.loads(path.read_bytes())["signed"]
        return Role(int(signed["version"]), str(signed["expires"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
