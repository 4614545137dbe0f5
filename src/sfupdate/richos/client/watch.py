"""Local media: wait for an SFUI or a static repository to appear under a mount point, install
it once, and never again.

Each poll scans the directory tree (bounded depth and entry count, hidden entries skipped)
for *items*: a static repository (a directory holding `metadata/timestamp.json`) or a
loose `*.sfui` file outside any repository. An item is acted on once it has stopped changing
(the same sizes and modification times in two consecutive polls: a copy onto the medium has
finished):

- a loose SFUI is streamed to the agent like `sfu client update --from` (the agent decides);
- a repository is read through the verified index like `sfu client update --repo DIR`.

What was installed, and what the agent refused for good (malformed, unauthentic, refused by
policy), is remembered by the SFUI's SHA-256 in `installed.json` in the state directory, so the
same image is neither reinstalled (while its trial waits for a reboot, or from another medium)
nor offered again. Transient failures (agent unreachable or busy, a read error) are retried at
the next poll.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sfupdate.errors import (
    AgentBusyError,
    AuthenticationError,
    DownloadError,
    FormatError,
    IpcError,
    PolicyError,
    SfuError,
    UsageError,
)
from sfupdate.richos.client.download import TransferPolicy
from sfupdate.richos.client.index import RepositoryIndex
from sfupdate.richos.client.sources import CHUNK, FileSource
from sfupdate.richos.client.update import Agent, Installed, check, install_file, update

MAX_DEPTH: Final = 4  # /media/usb/vendor/product/repo/metadata
MAX_ENTRIES: Final = 10_000  # entries looked at per poll, at most
REMEMBERED: Final = 256  # digests kept in installed.json (oldest dropped first)
STATE_FILE: Final = "installed.json"
#: Refusals that the same bytes will always get: remembered, never offered again.
FINAL_REFUSALS: Final = (FormatError, AuthenticationError, PolicyError)
#: Failures that may pass (the agent restarts or finishes another install, a read error):
#: the item is tried again at the next poll. Any other failure waits for the item to change.
TRANSIENT: Final = (IpcError, AgentBusyError, DownloadError)

Signature = tuple[tuple[str, int, int], ...]  # (path, size, mtime_ns) of the item's files


@dataclass(frozen=True)
class Outcome:
    """What one poll did with one item: installed it, or why not (`error`)."""

    item: Path
    kind: str  # "sfui" or "repository"
    installed: Installed | None = None
    error: SfuError | None = None
    up_to_date: bool = False  # a repository with nothing new (or only what is remembered)


class InstalledLog:
    """The digests of SFUIs installed or refused for good, in `state_dir/installed.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self.entries: list[dict[str, object]] = []
        try:
            data = json.loads(self.path.read_text())
            self.entries = [e for e in data["images"] if isinstance(e, dict)
                            and isinstance(e.get("sha256"), str)]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{self.path}: unreadable watch state ({exc}); remove it to "
                             "start afresh") from None

    def __contains__(self, digest: str) -> bool:
        return any(e["sha256"] == digest for e in self.entries)

    def add(self, digest: str, name: str, result: str) -> None:
        self.entries = [e for e in self.entries if e["sha256"] != digest]
        self.entries.append({"sha256": digest, "name": name, "result": result,
                             "at": int(time.time())})
        self.entries = self.entries[-REMEMBERED:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"images": self.entries}, indent=1) + "\n")
        os.replace(tmp, self.path)


class Watcher:
    """Polls `root`; `poll()` acts on every item that has settled and is new."""

    def __init__(self, root: Path, agent: Agent, state_dir: Path,
                 trusted_root: Path | None = None, policy: TransferPolicy | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.root, self.agent, self.state_dir = root, agent, state_dir
        self.trusted_root = trusted_root
        self.policy = policy or TransferPolicy()
        self.log = log or (lambda _line: None)
        self.remembered = InstalledLog(state_dir)
        self._seen: dict[Path, Signature] = {}  # last poll's signatures
        self._done: dict[Path, Signature] = {}  # items dealt with, as they were then

    def poll(self) -> list[Outcome]:
        outcomes = []
        now = dict(self._scan())
        for item, signature in sorted(now.items()):
            settled = self._seen.get(item) == signature
            if settled and self._done.get(item) != signature:
                outcome = self._act(item)
                outcomes.append(outcome)
                if not isinstance(outcome.error, TRANSIENT):
                    self._done[item] = signature
        self._seen = now
        self._done = {k: v for k, v in self._done.items() if k in now}  # medium removed
        return outcomes

    # --- finding items ------------------------------------------------------------------------

    def _scan(self) -> Iterator[tuple[Path, Signature]]:
        budget = [MAX_ENTRIES]
        yield from self._scan_dir(self.root, 0, budget)

    def _scan_dir(self, directory: Path, depth: int,
                  budget: list[int]) -> Iterator[tuple[Path, Signature]]:
        if (directory / "metadata" / "timestamp.json").is_file():
            yield directory, self._signature(directory, budget)
            return
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return  # not mounted (yet), or unreadable: nothing there this time
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0 or entry.name.startswith("."):
                continue
            try:
                if entry.is_file() and entry.name.endswith(".sfui"):
                    st = entry.stat()
                    yield Path(entry.path), ((entry.name, st.st_size, st.st_mtime_ns),)
                elif entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH:
                    yield from self._scan_dir(Path(entry.path), depth + 1, budget)
            except OSError:
                continue

    @staticmethod
    def _signature(directory: Path, budget: list[int]) -> Signature:
        files = []
        for sub in ("metadata", "targets"):
            for path in sorted((directory / sub).rglob("*")):
                budget[0] -= 1
                if budget[0] < 0:
                    break
                try:
                    st = path.stat()
                except OSError:
                    continue
                files.append((str(path.relative_to(directory)), st.st_size, st.st_mtime_ns))
        return tuple(files)

    # --- acting on one ------------------------------------------------------------------------

    def _act(self, item: Path) -> Outcome:
        if item.is_dir():
            return self._repository(item)
        return self._sfui(item)

    def _sfui(self, path: Path) -> Outcome:
        try:
            digest = _sha256(path)
        except OSError as exc:
            return Outcome(path, "sfui", error=UsageError(f"{path}: {exc.strerror}"))
        if digest in self.remembered:
            self.log(f"{path}: already handled (sha-256 {digest[:16]}...), not installed again")
            return Outcome(path, "sfui", up_to_date=True)
        try:
            installed = install_file(path, self.agent, policy=self.policy)
        except FINAL_REFUSALS as exc:
            self.remembered.add(digest, path.name, f"refused: {exc}")
            return Outcome(path, "sfui", error=exc)
        except SfuError as exc:
            return Outcome(path, "sfui", error=exc)
        self.remembered.add(digest, path.name, f"installed sequence {installed.sequence}")
        return Outcome(path, "sfui", installed=installed)

    def _repository(self, root: Path) -> Outcome:
        try:
            available = check(self._index(root), self.agent).available
            if available is None or available.sha256 in self.remembered:
                return Outcome(root, "repository", up_to_date=True)
            result = update(self._index(root), self.agent, log=self.log)
        except SfuError as exc:
            return Outcome(root, "repository", error=exc)
        if result.installed is None or result.chosen is None:
            return Outcome(root, "repository", up_to_date=True)
        for skipped in result.skipped:
            if isinstance(skipped.error, FINAL_REFUSALS):
                self.remembered.add(skipped.candidate.sha256, skipped.candidate.name,
                                    f"refused: {skipped.error}")
        self.remembered.add(result.chosen.sha256, result.chosen.name,
                            f"installed sequence {result.installed.sequence}")
        return Outcome(root, "repository", installed=result.installed)


    def _index(self, root: Path) -> RepositoryIndex:
        """A fresh view of the repository (an index refreshes once)."""
        return RepositoryIndex(FileSource(root), self.state_dir / "repository",
                               self.trusted_root, self.policy, self.log)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def watch(watcher: Watcher, interval: float, once: bool, timeout: float | None,
          report: Callable[[Outcome], None],
          sleep: Callable[[float], None] = time.sleep) -> list[Outcome]:
    """Poll every `interval` seconds until an item is acted on (`once`), or `timeout` seconds
    have passed (None: forever). Returns what was installed or refused, in order."""
    deadline = None if timeout is None else time.monotonic() + timeout
    acted: list[Outcome] = []
    while True:
        for outcome in watcher.poll():
            report(outcome)
            if not outcome.up_to_date:
                acted.append(outcome)
        if once and acted:
            return acted
        if deadline is not None and time.monotonic() + interval > deadline:
            return acted
        sleep(interval)
