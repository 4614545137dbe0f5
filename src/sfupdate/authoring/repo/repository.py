"""The update repository: SFUIs in a static tree, indexed by signed TUF metadata.

Layout of a repository directory (everything but `.sfu/` is what clients fetch)::

    DIR/metadata/1.root.json         trust anchor; clients get it out of band (provisioning)
    DIR/metadata/timestamp.json      the only unversioned file: points at the newest snapshot
    DIR/metadata/N.snapshot.json     points at the newest targets version
    DIR/metadata/N.targets.json      what is available: one entry per SFUI (hashes, length,
                                     custom: sequence, vendor_id, class_id, version)
    DIR/targets/<sha256>.<name>      the SFUIs, content-addressed (consistent snapshots)
    DIR/metadata/N.root.json         later root versions (key rotations), each signed by the
                                     previous root's keys; clients follow the chain
    DIR/.sfu/repo.json               configuration: expiry per role; the firmware keys `add`
                                     verifies SFUIs with (public PEMs)
    DIR/.sfu/keys.json               the online roles' key references (paths, pkcs11: URIs; no
                                     secrets) that `publish` uses unless given others
    DIR/.sfu/staged.json             changes since the last publish: name -> new entry, or
                                     name -> null for a removal

Publishing writes new versioned files first and `timestamp.json` last (atomic renames, fsync),
so a client reading the tree during a publish sees either the old or the new index, never a
mix. Old versions stay in place: a CDN may serve them for a while, clients refuse them.

Each role has its own keys, listed in the root metadata (repo/roles.py): `init` takes
one key per role (or one for all), `publish` signs with the keys it is given or the
remembered online ones, and `rotate` replaces a role's keys in a new root version signed by
the root keys. The root key is never remembered: it can stay offline (in an HSM, or a file
on a machine that never serves the repository).

`add` admits only an SFUI that verifies completely (sfupdate.authoring.repo.admit) with the firmware
keys given to `init` (and those given to that `add`), and only one image per vendor, class and
sequence number. `remove` stages a withdrawal: the next publish is an index without it, and
clients that refresh are no longer offered it (its file stays: a client may be fetching it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from sfupdate.authoring.repo.admit import admit, image_of
from sfupdate.authoring.repo.roles import (
    ONLINE_ROLES,
    ROLES,
    Keyring,
    RoleKeys,
    normalise,
    read_keys_file,
)
from sfupdate.authoring.repo.status import RoleStatus
from sfupdate.errors import (
    DuplicateImageError,
    NotInRepositoryError,
    RepositoryError,
    SfuError,
    UsageError,
)
from sfupdate.formats.sfui import TrustedKey
from sfupdate.formats.sfui.encoding import Delta
from sfupdate.keys import Unlock, parse_public_pem, public_pem

METADATA: Final = "metadata"
TARGETS: Final = "targets"
PRIVATE: Final = ".sfu"
CONFIG: Final = "repo.json"
KEYS: Final = "keys.json"
STAGED: Final = "staged.json"
ROOT_EXPIRES_DAYS: Final = 365
DEFAULT_EXPIRES_DAYS: Final = 7
_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}")
_ROOT_FILE: Final = re.compile(r"([1-9][0-9]*)\.root\.json")


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
    delta_base: str | None = None  # a delta: the SHA-256 (hex) of the image it applies to

    def target_file(self) -> TargetFile:
        custom: dict[str, Any] = {"sequence": self.sequence, "vendor_id": self.vendor_id,
                                  "class_id": self.class_id, "version": self.version}
        if self.delta_base is not None:
            custom["delta_base"] = self.delta_base
        return TargetFile(self.length, {"sha256": self.sha256}, self.name,
                          unrecognized_fields={"custom": custom})

    @classmethod
    def from_target_file(cls, target: TargetFile) -> Entry:
        """The entry an index lists (written by `target_file`)."""
        custom = target.custom if isinstance(target.custom, dict) else {}
        return cls(target.path, target.length, str(target.hashes.get("sha256")),
                   int(custom.get("sequence", -1)), str(custom.get("vendor_id")),
                   str(custom.get("class_id")), custom.get("version"),
                   custom.get("delta_base"))

    @property
    def release(self) -> tuple[str, str, int, str | None]:
        """What must be unique in a repository: vendor, class and sequence number (and, for a
        delta, its base: one full image and one delta per base for each release)."""
        return self.vendor_id, self.class_id, self.sequence, self.delta_base

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "length": self.length, "sha256": self.sha256,
                "sequence": self.sequence, "vendor_id": self.vendor_id,
                "class_id": self.class_id, "version": self.version,
                "delta_base": self.delta_base}


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


def _sign(md: Metadata[Any], signers: Sequence[Signer]) -> None:
    """Add each signer's signature; our own errors (a token refusing to sign) come out as
    they are, not wrapped by python-tuf."""
    for signer in signers:
        try:
            md.sign(signer, append=True)
        except UnsignedMetadataError as exc:
            if isinstance(exc.__cause__, SfuError):
                raise exc.__cause__ from None
            raise


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
    def init(cls, root: Path, keys: RoleKeys | str | Path, firmware_keys: Sequence[TrustedKey],
             expires_days: int = DEFAULT_EXPIRES_DAYS, now: datetime | None = None,
             unlock: Unlock | None = None) -> Repository:
        """Create the tree, root metadata v1 and an empty first publish.

        `keys` names each role's signing keys (role -> references), or is one reference for
        every role. `firmware_keys` are the keys SFUIs must be signed with to be added
        (their public PEMs go in repo.json)."""
        if expires_days < 1:
            raise UsageError("--expires-days must be at least 1")
        if not firmware_keys:
            raise UsageError("a repository needs at least one firmware key (--firmware-key): "
                             "the public key SFUIs are signed with")
        if (root / PRIVATE).exists():
            raise UsageError(f"{root} is already a repository")
        role_keys = ({role: [normalise(keys)] for role in ROLES}
                     if isinstance(keys, str | Path)
                     else {role: [normalise(ref) for ref in refs] for role, refs in keys.items()})
        missing = [role for role in ROLES if not role_keys.get(role)]
        if missing:
            raise UsageError("a repository needs a key for every role: --key KEY for all, or "
                             + ", ".join(f"--{role}-key" for role in missing))
        keyring = Keyring(role_keys, unlock)
        now = now or _now()
        metadata = Root(version=1, consistent_snapshot=True,
                        expires=now + timedelta(days=ROOT_EXPIRES_DAYS))
        for role in ROLES:
            for ref in role_keys[role]:  # every key loads (and unlocks) before anything is made
                metadata.add_key(keyring.signer(ref).public_key, role)
        roles = {role: {"expires_days": ROOT_EXPIRES_DAYS if role == Root.type else expires_days}
                 for role in ROLES}
        pems = list(dict.fromkeys(public_pem(k.public_key).decode() for k in firmware_keys))
        created = [root / sub for sub in (PRIVATE, METADATA, TARGETS) if not (root / sub).exists()]
        try:
            for sub in (PRIVATE, METADATA, TARGETS):
                (root / sub).mkdir(parents=True, exist_ok=True)
            config = {"format": 2, "roles": roles, "firmware_keys": pems}
            _write_atomic(root / PRIVATE / CONFIG, json.dumps(config, indent=2).encode())
            repo = cls(root)
            repo._remember({role: role_keys[role] for role in ONLINE_ROLES})
            repo._write_root(metadata, keyring.signers(Root.type, metadata))
            repo.publish(now, keyring=keyring)
        except BaseException:  # a key that fails to sign: no half-made repository stays
            for path in created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return repo

    def _expires(self, role: str, now: datetime) -> datetime:
        return now + timedelta(days=int(self._config["roles"][role]["expires_days"]))

    def _write_root(self, metadata: Root, signers: Sequence[Signer]) -> None:
        md = Metadata(metadata)
        _sign(md, signers)
        _write_atomic(self._meta(f"{metadata.version}.root.json"), md.to_bytes())

    # --- signing keys -----------------------------------------------------------------------

    def remembered_keys(self) -> dict[str, list[str]]:
        """The online roles' key references `publish` uses by default (.sfu/keys.json; a
        repository made before it existed kept them in repo.json's roles)."""
        path = self.root / PRIVATE / KEYS
        if path.exists():
            return read_keys_file(path)
        return {role: list(self._config["roles"][role].get("keys", []))
                for role in ONLINE_ROLES}

    def _remember(self, keys: RoleKeys) -> None:
        remembered = {**self.remembered_keys(), **{r: list(k) for r, k in keys.items()}}
        _write_atomic(self.root / PRIVATE / KEYS, json.dumps(remembered, indent=2).encode())

    def trusted_root(self) -> Root:
        """The newest root metadata: which keys sign for each role, and the thresholds."""
        versions = [int(m.group(1)) for f in (self.root / METADATA).iterdir()
                    if (m := _ROOT_FILE.fullmatch(f.name))]
        if not versions:
            raise RepositoryError(f"{self.root / METADATA} holds no root metadata")
        root: Root = self._load(f"{max(versions)}.root.json").signed
        return root

    def rotate(self, role: str, new_keys: Sequence[str | Path], root_keys: Sequence[str | Path],
               keys: RoleKeys | None = None, unlock: Unlock | None = None,
               now: datetime | None = None) -> int:
        """Replace `role`'s keys by `new_keys` in a new root version, signed by the current
        root keys (and, for the root role, by the new root keys too, as TUF requires).

        A new online key is remembered for later publishes, and the index is republished
        at once with it, so clients that take the new root find metadata it vouches for.
        Returns the new root version."""
        if role not in ROLES:
            raise UsageError(f"no role {role!r} (one of {', '.join(ROLES)})")
        if not new_keys:
            raise UsageError("give the new key: --new-key KEY")
        if not root_keys:
            raise UsageError("a rotation is signed by the current root key: --root-key KEY")
        new_refs = [normalise(ref) for ref in new_keys]
        now = now or _now()
        keyring = Keyring({**self.remembered_keys(), **(keys or {}), role: new_refs}, unlock)
        current = self.trusted_root()
        signers = keyring.signers(Root.type, current, [normalise(r) for r in root_keys])
        metadata = Root.from_dict(current.to_dict())
        for keyid in list(metadata.roles[role].keyids):
            metadata.revoke_key(keyid, role)
        for ref in new_refs:
            metadata.add_key(keyring.signer(ref).public_key, role)
        metadata.version = current.version + 1
        metadata.expires = self._expires(Root.type, now)
        if role == Root.type:
            signers += keyring.signers(Root.type, metadata)
        else:  # the publish below must not fail once the new root is out
            for online in ONLINE_ROLES:
                keyring.signers(online, metadata)
        self._write_root(metadata, signers)
        if role in ONLINE_ROLES:
            self._remember({role: new_refs})
            self.publish(now, keyring=keyring)
        return metadata.version

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

    def add(self, sfui: Path, trust: Sequence[TrustedKey] = (), replace: bool = False
            ) -> Entry:
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
            admitted = admit(f, sfui, self.root / TARGETS, trusted, self._base_image)
        try:
            info, text = admitted.info, admitted.text
            entry = Entry(name, admitted.length, admitted.sha256, info.sequence_number,
                          str(info.vendor_id), str(info.class_id),
                          text.component_version() if text else None,
                          admitted.delta.base_digest.hex() if admitted.delta else None)
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

    def full_images(self, vendor_id: str, class_id: str) -> list[Entry]:
        """The current full (not delta) images of a vendor and class."""
        return [e for e in self._current().values() if e.delta_base is None
                and (e.vendor_id, e.class_id) == (vendor_id, class_id)]

    def target_path(self, entry: Entry) -> Path:
        """Where an entry's SFUI is stored."""
        return self.root / TARGETS / f"{entry.sha256}.{entry.name}"

    def _base_image(self, delta: Delta) -> bytes:
        """The image a delta applies to, from a full (or compressed) image of this
        repository; a delta whose base the repository does not hold is refused."""
        for entry in self._current().values():
            image = None if entry.delta_base else image_of(self.target_path(entry),
                                                           delta.base_digest)
            if image is not None:
                return image
        raise UsageError(f"the delta's base image sha256:{delta.base_digest.hex()} is in no "
                         "image of this repository: add that image first")

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

    def publish(self, now: datetime | None = None, keys: RoleKeys | None = None,
                unlock: Unlock | None = None, keyring: Keyring | None = None) -> int:
        """Sign new targets, snapshot and timestamp versions; timestamp.json goes last.

        The keys are `keys` (role -> references), for roles not given there the remembered
        ones, or those of `keyring` (init and rotate pass theirs, already unlocked); each must
        be listed for its role by the newest root. Every publish renews all three expiries, so
        publishing with nothing staged is how a repository keeps its index fresh. Returns the
        new targets version.
        """
        now = now or _now()
        keyring = keyring or Keyring({**self.remembered_keys(), **(keys or {})}, unlock)
        root = self.trusted_root()
        signers = {role: keyring.signers(role, root) for role in ONLINE_ROLES}
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
        self._sign_write(Metadata(new_targets), f"{targets_v + 1}.targets.json", signers)
        snapshot = Snapshot(version=snap_v + 1, expires=self._expires(Snapshot.type, now),
                            meta={"targets.json": MetaFile(version=targets_v + 1)})
        self._sign_write(Metadata(snapshot), f"{snap_v + 1}.snapshot.json", signers)
        timestamp = Timestamp(version=ts_v + 1, expires=self._expires(Timestamp.type, now),
                              snapshot_meta=MetaFile(version=snap_v + 1))
        self._sign_write(Metadata(timestamp), "timestamp.json", signers)
        (self.root / PRIVATE / STAGED).unlink(missing_ok=True)
        return targets_v + 1

    def _sign_write(self, md: Metadata[Any], filename: str,
                    signers: Mapping[str, Sequence[Signer]]) -> None:
        _sign(md, signers[md.signed.type])
        _write_atomic(self._meta(filename), md.to_bytes())

    def status(self, now: datetime | None = None) -> list[RoleStatus]:
        """Each role's keys, threshold, newest version and expiry."""
        now = now or _now()
        root = self.trusted_root()
        newest: dict[str, Metadata[Any]] = {}
        if self._meta("timestamp.json").exists():
            newest[Timestamp.type] = self._load("timestamp.json")
            snap_v = newest[Timestamp.type].signed.snapshot_meta.version
            newest[Snapshot.type] = self._load(f"{snap_v}.snapshot.json")
            targets_v = newest[Snapshot.type].signed.meta["targets.json"].version
            newest[Targets.type] = self._load(f"{targets_v}.targets.json")
        remembered = self.remembered_keys()
        rows = []
        for role in ROLES:
            signed = root if role == Root.type else (
                newest[role].signed if role in newest else None)
            rows.append(RoleStatus(
                role, list(root.roles[role].keyids), root.roles[role].threshold,
                signed.version if signed else None, signed.expires if signed else None, now,
                remembered.get(role, [])))
        return rows
