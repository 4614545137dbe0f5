"""The repository index on the client side: TUF refresh with python-tuf's ngclient.

`tuf.ngclient.Updater` runs the TUF client workflow (root rotation, signature thresholds,
version rollback, expiry/freeze, snapshot consistency = mix-and-match) against a trusted
root kept in a local state directory; every metadata download goes through our `Source`
and `fetch()` (so timeouts, caps and the minimum rate apply to metadata too).

Targets are NOT downloaded by ngclient (it stores them whole in a file before checking):
`stream_target()` streams them through `fetch()` and holds back the last chunk until the
length and SHA-256 match the signed index, so a consumer (the agent) never receives a
complete file the index does not vouch for.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sfupdate.errors import DownloadError, RemoteFileNotFoundError, RepositoryError, UsageError
from sfupdate.richos.client.download import TransferPolicy, fetch
from sfupdate.richos.client.sources import Source
from sfupdate.richos.client.state import discard, started_from
from sfupdate.richos.client.tuf_api import (
    FetcherInterface,
    Metadata,
    Root,
    TargetFile,
    Targets,
    Updater,
)
from sfupdate.richos.client.tuf_api import exceptions as tuf_errors

_BASE: Final = "source:"  # ngclient builds "<base>metadata/N.root.json"; we strip the base
_TIMESTAMP: Final = "metadata/timestamp.json"
MAX_TRUSTED_ROOT: Final = 512 * 1024
_SHA256_HEX: Final = re.compile("[0-9a-f]{64}")


@dataclass(frozen=True)
class Candidate:
    """An SFUI listed in the verified index."""

    name: str
    length: int
    sha256: str
    sequence: int
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    version: str | None
    path: str  # where to fetch it, relative to the repository root
    delta_base: str | None = None  # a delta: the SHA-256 (hex) of the image it applies to

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "length": self.length, "sha256": self.sha256,
                "sequence": self.sequence, "vendor_id": str(self.vendor_id),
                "class_id": str(self.class_id), "version": self.version,
                "delta_base": self.delta_base}


class _SourceFetcher(FetcherInterface):
    """ngclient's network hook, routed through a Source with our transfer policy."""

    def __init__(self, source: Source, policy: TransferPolicy,
                 log: Callable[[str], None] | None) -> None:
        self._source, self._policy, self._log = source, policy, log
        self.current = ""  # the file being fetched, for error messages
        self.path = ""  # ... and its path in the repository

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = url.removeprefix(_BASE)
        self.path, self.current = path, self._source.describe(path)
        try:
            yield from fetch(self._source, path, None, self._policy, self._log)
        except RemoteFileNotFoundError as exc:
            # ngclient probes N+1.root.json and expects a 404 when there is none
            raise tuf_errors.DownloadHTTPError(str(exc), 404) from None


def _explain(exc: tuf_errors.RepositoryError, path: str, state_dir: Path) -> str:
    """Say what a refused index means. `path` is the metadata file just fetched: a version
    refused there is a rollback if it was the timestamp (older than the trusted one, or
    naming an older snapshot), else files of different publishes. `state_dir` holds the
    trusted root."""
    what = str(exc)
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return (f"repository index is stale: {what}; refusing an index that is past its "
                "expiry (a frozen or outdated mirror)")
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        if path == _TIMESTAMP:
            return (f"repository index is older than one already seen: {what} "
                    "(rollback refused)")
        return (f"repository index files come from different publishes: {what} "
                "(mix-and-match refused)")
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return (f"repository index is not signed by the trusted repository keys: {what} "
                f"(the trusted root is kept in {state_dir}; if it is not this repository's, "
                "pass the right one with --trusted-root: it replaces the stored one)")
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return f"repository index files do not match each other: {what}"
    return f"repository index refused: {what}"


def _candidate(target: TargetFile, prefix_hash: bool) -> Candidate:
    custom = target.custom
    sha256 = target.hashes.get("sha256")
    if not isinstance(custom, Mapping) or not isinstance(sha256, str):
        raise RepositoryError(f"index entry {target.path!r} has no sha256 or no sfupdate "
                              "fields")
    sequence, version = custom.get("sequence"), custom.get("version")
    delta_base = custom.get("delta_base")
    try:
        vendor = uuid.UUID(str(custom.get("vendor_id")))
        klass = uuid.UUID(str(custom.get("class_id")))
    except ValueError:
        raise RepositoryError(f"index entry {target.path!r} has a malformed vendor or class "
                              "id") from None
    if not (isinstance(sequence, int) and not isinstance(sequence, bool) and sequence >= 0
            and (version is None or isinstance(version, str))
            and (delta_base is None or (isinstance(delta_base, str)
                                        and _SHA256_HEX.fullmatch(delta_base) is not None))):
        raise RepositoryError(f"index entry {target.path!r} has malformed sfupdate fields")
    directory, _, base = target.path.rpartition("/")
    stored = f"{sha256}.{base}" if prefix_hash else base
    path = "targets/" + (f"{directory}/{stored}" if directory else stored)
    return Candidate(target.path, target.length, sha256, sequence, vendor, klass, version,
                     path, delta_base)


class RepositoryIndex:
    """A repository as one client sees it: its verified index, and streams of its files.

    `state_dir` keeps the trusted metadata between runs (that is what makes rollback of the
    index detectable); it is seeded from `trusted_root` (the repository's 1.root.json,
    provisioned out of band) the first time. A `trusted_root` given later is checked against
    the state: when the state holds another root of that version, the given root wins (the
    state is discarded and seeded from it again). A first run that fails to verify the
    index leaves no state behind (sfupdate.richos.client.state).
    """

    def __init__(self, source: Source, state_dir: Path, trusted_root: Path | None = None,
                 policy: TransferPolicy | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.source = source
        self.policy = policy or TransferPolicy()
        self._log = log
        self._state = state_dir
        bootstrap = None if trusted_root is None else self._read_root(trusted_root)
        self._fresh = not (state_dir / "root.json").exists()
        if bootstrap is not None and not self._fresh and not started_from(state_dir, bootstrap):
            if log:
                log(f"{trusted_root} is not the root this client trusted for the repository; "
                    f"discarding the index metadata kept in {state_dir} and starting over "
                    "from it")
            discard(state_dir)
            self._fresh = True
        if self._fresh and bootstrap is None:
            raise UsageError(f"no trusted root for this repository in {state_dir}: pass "
                             "--trusted-root (the repository's metadata/1.root.json, "
                             "obtained out of band)")
        self._created = not state_dir.exists()
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._fetcher = _SourceFetcher(source, self.policy, log)
            self._updater = Updater(str(state_dir), _BASE + "metadata/", fetcher=self._fetcher,
                                    bootstrap=bootstrap if self._fresh else None)
        except tuf_errors.RepositoryError as exc:
            self._forget_if_fresh()
            raise RepositoryError(f"trusted root is unusable: {exc}") from None

    def _forget_if_fresh(self) -> None:
        """After a failed first run: leave no state behind (the next run starts clean)."""
        if self._fresh:
            discard(self._state, remove_dir=self._created)

    @staticmethod
    def _read_root(path: Path) -> bytes:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_TRUSTED_ROOT + 1)
        except OSError as exc:
            raise UsageError(f"cannot read trusted root {path}: {exc.strerror}") from None
        if len(data) > MAX_TRUSTED_ROOT:
            raise UsageError(f"{path} is too large to be root metadata")
        return data

    def refresh(self) -> list[Candidate]:
        """Run the TUF refresh; return every entry of the verified top-level targets."""
        try:
            self._refresh()
        except BaseException:
            self._forget_if_fresh()
            raise
        self._fresh = False
        return self._listing()

    def _refresh(self) -> None:
        try:
            self._updater.refresh()
        except tuf_errors.RepositoryError as exc:
            raise RepositoryError(_explain(exc, self._fetcher.path, self._state)) from None
        except tuf_errors.DownloadLengthMismatchError as exc:
            raise DownloadError(f"{self._fetcher.current}: index file too long ({exc}); "
                                "transfer abandoned (endless data)") from None
        except tuf_errors.DownloadError as exc:
            raise DownloadError(f"{self._fetcher.current}: index download failed: {exc}"
                                ) from None

    def _listing(self) -> list[Candidate]:
        # ngclient persisted exactly what it verified; read it back for the listing.
        targets = Metadata[Targets].from_bytes((self._state / "targets.json").read_bytes()).signed
        trusted_root = Metadata[Root].from_bytes(
            (self._state / "root.json").read_bytes()).signed
        prefix = bool(trusted_root.consistent_snapshot)
        candidates = []
        for name in sorted(targets.targets):
            verified = self._updater.get_targetinfo(name)  # re-read through ngclient
            if verified is None:
                raise RepositoryError(f"index entry {name!r} vanished during refresh")
            candidates.append(_candidate(verified, prefix))
        return candidates

    def stream(self, candidate: Candidate) -> Iterator[bytes]:
        """The candidate's bytes, checked against the index as they arrive: each chunk is
        handed on at once, except the one that completes the length, released only after
        the SHA-256 matches (`fetch()` never yields past the length, nor ends short of it)."""
        hasher = hashlib.sha256()
        received = 0
        for chunk in fetch(self.source, candidate.path, candidate.length, self.policy,
                           self._log):
            hasher.update(chunk)
            received += len(chunk)
            if received == candidate.length:
                self._check_digest(hasher.hexdigest(), candidate)
            yield chunk
        if not received:
            self._check_digest(hasher.hexdigest(), candidate)

    def _check_digest(self, digest: str, candidate: Candidate) -> None:
        if digest != candidate.sha256:
            raise DownloadError(f"{self.source.describe(candidate.path)}: the bytes served do "
                                f"not match the signed index (sha256 {digest[:16]}..., index "
                                f"says {candidate.sha256[:16]}...): wrong or substituted "
                                "file, not installed")
