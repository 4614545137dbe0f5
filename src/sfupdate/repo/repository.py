"""The update repository: SFUIs in a static tree, indexed by signed TUF metadata.

Layout of a repository directory (everything but `.sfu/` is what clients fetch)::

    DIR/metadata/1.root.json         trust anchor; clients get it out of band (provisioning)
    DIR/metadata/timestamp.json      the only unversioned file: points at the newest snapshot
    DIR/metadata/N.snapshot.json     points at the newest targets version
    DIR/metadata/N.targets.json      what is available: one entry per SFUI (hashes, length,
                                     custom: sequence, vendor_id, class_id, version)
    DIR/targets/<sha256>.<name>      the SFUIs, content-addressed (consistent snapshots)
    DIR/.sfu/repo.json               signing configuration: key FILE PATHS per role, expiries
    DIR/.sfu/staged.json             entries added since the last publish

Publishing writes new versioned files first and `timestamp.json` last (atomic renames, fsync),
so a client reading the tree during a publish sees either the old or the new index, never a
mix. Old versions stay in place: a CDN may serve them for a while, clients refuse them.

Each role has its own list of key files and threshold in repo.json; `init` puts the one
`--key` in every role, and nothing else assumes that they are the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import (
    TOP_LEVEL_ROLE_NAMES,
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from sfupdate.errors import RepositoryError, UsageError
from sfupdate.keys.files import load_private_key
from sfupdate.sfui import EnvelopeReader, ImageInfo

METADATA: Final = "metadata"
TARGETS: Final = "targets"
PRIVATE: Final = ".sfu"
CONFIG: Final = "repo.json"
STAGED: Final = "staged.json"
ROOT_EXPIRES_DAYS: Final = 365
DEFAULT_EXPIRES_DAYS: Final = 7
CHUNK: Final = 1024 * 1024
_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}")


@dataclass(frozen=True)
class Entry:
    """One SFUI as the index lists it."""

    name: str
    length: int
    sha256: str
    sequence: int
    vendor_id: str
    class_id: str
    version: str | None

    def target_file(self) -> TargetFile:
        custom = {"sequence": self.sequence, "vendor_id": self.vendor_id,
                  "class_id": self.class_id, "version": self.version}
        return TargetFile(self.length, {"sha256": self.sha256}, self.name,
                          unrecognized_fields={"custom": custom})


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write-new-then-rename with fsync of the file and of its directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Repository:
    """A repository directory: load it, stage SFUIs, publish signed metadata."""

    def __init__(self, root: Path) -> None:
        self.root = root
        config_path = root / PRIVATE / CONFIG
        try:
            self._config: dict[str, Any] = json.loads(config_path.read_text())
        except FileNotFoundError:
            raise UsageError(f"{root} is not a repository (no {PRIVATE}/{CONFIG}; "
                             "run `sfu repo init`)") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {config_path}: {exc}") from None

    # --- creation ---------------------------------------------------------------------------

    @classmethod
    def init(cls, root: Path, key_file: Path, expires_days: int = DEFAULT_EXPIRES_DAYS,
             now: datetime | None = None) -> Repository:
        """Create the tree, root metadata v1 and an empty first publish."""
        if expires_days < 1:
            raise UsageError("--expires-days must be at least 1")
        if (root / PRIVATE).exists():
            raise UsageError(f"{root} is already a repository")
        key_path = str(key_file.resolve())
        load_private_key(key_file)  # fail now, not at the first publish
        roles = {name: {"keys": [key_path], "threshold": 1,
                        "expires_days": ROOT_EXPIRES_DAYS if name == Root.type else expires_days}
                 for name in sorted(TOP_LEVEL_ROLE_NAMES)}
        for sub in (PRIVATE, METADATA, TARGETS):
            (root / sub).mkdir(parents=True, exist_ok=True)
        _write_atomic(root / PRIVATE / CONFIG,
                      json.dumps({"format": 1, "roles": roles}, indent=2).encode())
        repo = cls(root)
        repo._write_root(now or _now())
        repo.publish(now)
        return repo

    def _signers(self, role: str) -> list[CryptoSigner]:
        return [CryptoSigner(load_private_key(Path(p)))
                for p in self._config["roles"][role]["keys"]]

    def _expires(self, role: str, now: datetime) -> datetime:
        return now + timedelta(days=int(self._config["roles"][role]["expires_days"]))

    def _write_root(self, now: datetime) -> None:
        root = Root(version=1, expires=self._expires(Root.type, now), consistent_snapshot=True)
        for role in TOP_LEVEL_ROLE_NAMES:
            config = self._config["roles"][role]
            root.roles[role] = Role([], int(config["threshold"]))
            for signer in self._signers(role):
                key = signer.public_key
                assert isinstance(key, SSlibKey)
                root.add_key(key, role)
        md = Metadata(root)
        for signer in self._signers(Root.type):
            md.sign(signer, append=True)
        _write_atomic(self._meta("1.root.json"), md.to_bytes())

    # --- reading the published state --------------------------------------------------------

    def _meta(self, name: str) -> Path:
        return self.root / METADATA / name

    def _load(self, name: str) -> Metadata[Any]:
        try:
            return Metadata.from_bytes(self._meta(name).read_bytes())
        except OSError as exc:
            raise RepositoryError(f"cannot read {self._meta(name)}: {exc.strerror}") from None

    def published(self) -> tuple[int, int, int, dict[str, TargetFile]]:
        """(timestamp, snapshot, targets) versions and the targets of the last publish."""
        if not self._meta("timestamp.json").exists():
            return 0, 0, 0, {}
        timestamp: Timestamp = self._load("timestamp.json").signed
        snap_v = timestamp.snapshot_meta.version
        snapshot: Snapshot = self._load(f"{snap_v}.snapshot.json").signed
        targets_v = snapshot.meta["targets.json"].version
        targets: Targets = self._load(f"{targets_v}.targets.json").signed
        return timestamp.version, snap_v, targets_v, dict(targets.targets)

    # --- staging and publishing -------------------------------------------------------------

    def _staged(self) -> dict[str, Any]:
        path = self.root / PRIVATE / STAGED
        if not path.exists():
            return {}
        staged: dict[str, Any] = json.loads(path.read_text())
        return staged

    def add(self, sfui: Path) -> Entry:
        """Copy an SFUI into targets/ (content-addressed) and stage its index entry."""
        name = sfui.name
        if not _NAME.fullmatch(name):
            raise UsageError(f"{name!r}: a target name is letters, digits and ._+- "
                             "(not starting with a dot), at most 200 characters")
        with _open(sfui) as f:
            reader = EnvelopeReader(f)  # indexing only: the device verifies the signature
            info = ImageInfo.from_manifest(reader.unverified_manifest())
            text = reader.unverified_text()
            if info.vendor_id is None or info.class_id is None:
                raise UsageError(f"{sfui}: the manifest names no UUID vendor-id or no "
                                 "class-id, so no device could select it")
            f.seek(0)
            length, sha256 = self._store(f, name)
        entry = Entry(name, length, sha256, info.sequence_number, str(info.vendor_id),
                      str(info.class_id), text.component_version() if text else None)
        known = {**self.published()[3], **{n: TargetFile.from_dict(dict(d), n)
                                             for n, d in self._staged().items()}}
        if name in known and known[name] != entry.target_file():
            (self.root / TARGETS / f"{sha256}.{name}").unlink(missing_ok=True)
            raise UsageError(f"{name} is already in the repository with other content; "
                             "give the new image another file name")
        staged = self._staged()
        staged[name] = entry.target_file().to_dict()
        _write_atomic(self.root / PRIVATE / STAGED, json.dumps(staged, indent=2).encode())
        return entry

    def _store(self, f: BinaryIO, name: str) -> tuple[int, str]:
        """Copy into targets/<sha256>.<name>, hashing on the way (one pass, flat memory)."""
        hasher = hashlib.sha256()
        length = 0
        fd, tmp = tempfile.mkstemp(dir=self.root / TARGETS, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := f.read(CHUNK):
                    hasher.update(chunk)
                    length += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.root / TARGETS / f"{hasher.hexdigest()}.{name}")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.root / TARGETS)
        return length, hasher.hexdigest()

    def publish(self, now: datetime | None = None) -> int:
        """Sign new targets, snapshot and timestamp versions; timestamp.json goes last.

        Every publish renews all three expiries, so publishing with nothing staged is how a
        repository keeps its index fresh. Returns the new targets version.
        """
        now = now or _now()
        ts_v, snap_v, targets_v, targets = self.published()
        for name, data in self._staged().items():
            targets[name] = TargetFile.from_dict(dict(data), name)
        new_targets = Targets(version=targets_v + 1, expires=self._expires(Targets.type, now),
                              targets=targets)
        self._sign_write(Metadata(new_targets), f"{targets_v + 1}.targets.json")
        snapshot = Snapshot(version=snap_v + 1, expires=self._expires(Snapshot.type, now),
                            meta={"targets.json": MetaFile(version=targets_v + 1)})
        self._sign_write(Metadata(snapshot), f"{snap_v + 1}.snapshot.json")
        timestamp = Timestamp(version=ts_v + 1, expires=self._expires(Timestamp.type, now),
                              snapshot_meta=MetaFile(version=snap_v + 1))
        self._sign_write(Metadata(timestamp), "timestamp.json")
        (self.root / PRIVATE / STAGED).unlink(missing_ok=True)
        return targets_v + 1

    def _sign_write(self, md: Metadata[Any], filename: str) -> None:
        for signer in self._signers(md.signed.type):
            md.sign(signer, append=True)
        _write_atomic(self._meta(filename), md.to_bytes())
