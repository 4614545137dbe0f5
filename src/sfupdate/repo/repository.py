"""The update repository: SFUIs in a static tree, indexed by signed TUF metadata.

Layout of a repository directory (everything but `.sfu/` is what clients fetch)::

    DIR/metadata/1.root.json         trust anchor; clients get it out of band (provisioning)
    DIR/metadata/timestamp.json      the only unversioned file: points at the newest snapshot
    DIR/metadata/N.snapshot.json     points at the newest targets version
    DIR/metadata/N.targets.json      what is available: one entry per SFUI (hashes, length,
                                     custom: sequence, vendor_id, class_id, version)
    DIR/targets/<sha256>.<name>      the SFUIs, content-addressed (consistent snapshots)
    DIR/.sfu/repo.json               signing configuration: key FILE PATHS per role, expiries;
                                     the firmware keys `add` verifies SFUIs with (public PEMs)
    DIR/.sfu/staged.json             changes since the last publish: name -> new entry, or
                                     name -> null for a removal

Publishing writes new versioned files first and `timestamp.json` last (atomic renames, fsync),
so a client reading the tree during a publish sees either the old or the new index, never a
mix. Old versions stay in place: a CDN may serve them for a while, clients refuse them.

Each role has its own list of key files and threshold in repo.json; `init` puts the one
`--key` in every role, and nothing else assumes that they are the same key.

`add` admits only an SFUI that verifies completely (sfupdate.repo.admit) with the firmware
keys given to `init` (and those given to that `add`), and only one image per vendor, class and
sequence number. `remove` stages a withdrawal: the next publish is an index without it, and
clients that refresh are no longer offered it (its file stays: a client may be fetching it).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
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

from sfupdate.errors import (
    DuplicateImageError,
    NotInRepositoryError,
    RepositoryError,
    UsageError,
)
from sfupdate.keys.files import load_private_key, parse_public_pem, public_pem
from sfupdate.repo.admit import admit
from sfupdate.sfui import TrustedKey

METADATA: Final = "metadata"
TARGETS: Final = "targets"
PRIVATE: Final = ".sfu"
CONFIG: Final = "repo.json"
STAGED: Final = "staged.json"
ROOT_EXPIRES_DAYS: Final = 365
DEFAULT_EXPIRES_DAYS: Final = 7
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

    @classmethod
    def from_target_file(cls, target: TargetFile) -> Entry:
        """The entry an index lists (written by `target_file`)."""
        custom = target.custom if isinstance(target.custom, dict) else {}
        return cls(target.path, target.length, str(target.hashes.get("sha256")),
                   int(custom.get("sequence", -1)), str(custom.get("vendor_id")),
                   str(custom.get("class_id")), custom.get("version"))

    @property
    def release(self) -> tuple[str, str, int]:
        """What must be unique in a repository: vendor, class and sequence number."""
        return self.vendor_id, self.class_id, self.sequence

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "length": self.length, "sha256": self.sha256,
                "sequence": self.sequence, "vendor_id": self.vendor_id,
                "class_id": self.class_id, "version": self.version}


@dataclass(frozen=True)
class Published:
    """The last publish: its timestamp, snapshot and targets versions and its targets (all
    0 and none before the first publish)."""

    timestamp_version: int
    snapshot_version: int
    targets_version: int
    targets: dict[str, TargetFile]


@dataclass(frozen=True)
class Listed:
    """One line of `sfu repo list`: an entry and where it stands."""

    entry: Entry
    state: str  # "published", "staged" (added or replaced), "removal staged"

    def to_json(self) -> dict[str, Any]:
        return {**self.entry.to_json(), "state": self.state}


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
    def init(cls, root: Path, key_file: Path, firmware_keys: Sequence[TrustedKey],
             expires_days: int = DEFAULT_EXPIRES_DAYS, now: datetime | None = None
             ) -> Repository:
        """Create the tree, root metadata v1 and an empty first publish. `firmware_keys` are
        the keys SFUIs must be signed with to be added (their public PEMs go in repo.json)."""
        if expires_days < 1:
            raise UsageError("--expires-days must be at least 1")
        if not firmware_keys:
            raise UsageError("a repository needs at least one firmware key (--firmware-key): "
                             "the public key SFUIs are signed with")
        if (root / PRIVATE).exists():
            raise UsageError(f"{root} is already a repository")
        key_path = str(key_file.resolve())
        load_private_key(key_file)  # fail now, not at the first publish
        roles = {name: {"keys": [key_path], "threshold": 1,
                        "expires_days": ROOT_EXPIRES_DAYS if name == Root.type else expires_days}
                 for name in sorted(TOP_LEVEL_ROLE_NAMES)}
        pems = list(dict.fromkeys(public_pem(k.public_key).decode() for k in firmware_keys))
        for sub in (PRIVATE, METADATA, TARGETS):
            (root / sub).mkdir(parents=True, exist_ok=True)
        config = {"format": 1, "roles": roles, "firmware_keys": pems}
        _write_atomic(root / PRIVATE / CONFIG, json.dumps(config, indent=2).encode())
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

    def published(self) -> Published:
        """The versions and the targets of the last publish."""
        if not self._meta("timestamp.json").exists():
            return Published(0, 0, 0, {})
        timestamp: Timestamp = self._load("timestamp.json").signed
        snap_v = timestamp.snapshot_meta.version
        snapshot: Snapshot = self._load(f"{snap_v}.snapshot.json").signed
        targets_v = snapshot.meta["targets.json"].version
        targets: Targets = self._load(f"{targets_v}.targets.json").signed
        return Published(timestamp.version, snap_v, targets_v, dict(targets.targets))

    # --- staging and publishing -------------------------------------------------------------

    def _staged(self) -> dict[str, Any]:
        """name -> TargetFile dict to add or replace, or None to remove."""
        path = self.root / PRIVATE / STAGED
        if not path.exists():
            return {}
        staged: dict[str, Any] = json.loads(path.read_text())
        return staged

    def _write_staged(self, staged: dict[str, Any]) -> None:
        _write_atomic(self.root / PRIVATE / STAGED, json.dumps(staged, indent=2).encode())

    def firmware_keys(self) -> list[TrustedKey]:
        """The keys `add` verifies SFUIs with (from `init --firmware-key`)."""
        return [parse_public_pem(pem.encode(), f"{self.root / PRIVATE / CONFIG} firmware key")
                for pem in self._config.get("firmware_keys", [])]

    def listing(self) -> list[Listed]:
        """Every published image and every staged change, by vendor, class and sequence."""
        published = {n: Entry.from_target_file(t) for n, t in self.published().targets.items()}
        rows = {name: Listed(entry, "published") for name, entry in published.items()}
        for name, data in self._staged().items():
            if data is None:
                if name in published:
                    rows[name] = Listed(published[name], "removal staged")
            else:
                rows[name] = Listed(Entry.from_target_file(TargetFile.from_dict(dict(data), name)),
                                    "staged")
        return sorted(rows.values(), key=lambda r: (*r.entry.release, r.entry.name))

    def _current(self) -> dict[str, Entry]:
        """What the next publish would list: the published index with the staged changes."""
        return {row.entry.name: row.entry for row in self.listing()
                if row.state != "removal staged"}

    def add(self, sfui: Path, trust: Sequence[TrustedKey] = (), replace: bool = False) -> Entry:
        """Verify an SFUI completely, copy it into targets/ (content-addressed) and stage its
        index entry.

        It must verify with one of the repository's firmware keys or `trust`. An image under
        the same name with other content, or another image for the same vendor, class and
        sequence number, is refused (DuplicateImageError) unless `replace`: then they are
        withdrawn from the index in the same publish.
        """
        name = sfui.name
        if not _NAME.fullmatch(name):
            raise UsageError(f"{name!r}: a target name is letters, digits and ._+- "
                             "(not starting with a dot), at most 200 characters")
        trusted = [*self.firmware_keys(), *trust]
        if not trusted:
            raise UsageError(f"{self.root} knows no firmware key to verify {sfui} with: pass "
                             "--trust PUB (repositories made by `sfu repo init "
                             "--firmware-key` remember theirs)")
        with _open(sfui) as f:
            admitted = admit(f, sfui, self.root / TARGETS, trusted)
        try:
            info, text = admitted.info, admitted.text
            entry = Entry(name, admitted.length, admitted.sha256, info.sequence_number,
                          str(info.vendor_id), str(info.class_id),
                          text.component_version() if text else None)
            staged, published = self._staged(), self.published().targets
            for other in self._clashes(entry, replace):
                if other in published:
                    staged[other] = None
                else:
                    del staged[other]
            staged[name] = entry.target_file().to_dict()
            os.replace(admitted.tmp, self.root / TARGETS / f"{admitted.sha256}.{name}")
        except BaseException:
            admitted.tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.root / TARGETS)
        self._write_staged(staged)
        return entry

    def _clashes(self, entry: Entry, replace: bool) -> list[str]:
        """Names of other current entries `entry` would replace (refused unless `replace`)."""
        clashes = []
        for other in self._current().values():
            if other == entry:
                continue
            if other.name == entry.name:
                why = (f"{entry.name} is already in the repository with other content; give "
                       "the new image another file name, or pass --replace to replace it")
            elif other.release == entry.release:
                why = (f"{other.name} already has sequence {entry.sequence} for this vendor "
                       f"and class; pass --replace to withdraw it and publish {entry.name} "
                       "instead")
            else:
                continue
            if not replace:
                raise DuplicateImageError(why)
            if other.name != entry.name:
                clashes.append(other.name)
        return clashes

    def remove(self, name: str) -> Entry:
        """Stage the withdrawal of an image: the next publish no longer lists it. Its file
        stays in targets/ (a client may be fetching it under the previous index)."""
        staged = self._staged()
        published = self.published().targets
        current = self._current()
        if name not in current:
            raise NotInRepositoryError(f"{name}: no such image in {self.root} (see "
                                       "`sfu repo list`)")
        if name in published:
            staged[name] = None
        else:
            del staged[name]
        self._write_staged(staged)
        return current[name]

    def publish(self, now: datetime | None = None) -> int:
        """Sign new targets, snapshot and timestamp versions; timestamp.json goes last.

        Every publish renews all three expiries, so publishing with nothing staged is how a
        repository keeps its index fresh. Returns the new targets version.
        """
        now = now or _now()
        last = self.published()
        ts_v, snap_v, targets_v = (last.timestamp_version, last.snapshot_version,
                                   last.targets_version)
        targets = last.targets
        for name, data in self._staged().items():
            if data is None:
                targets.pop(name, None)
            else:
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
