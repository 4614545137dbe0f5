"""Which keys sign which TUF role, given per command rather than frozen at `init`.

A role's keys are named by references (PEM file paths or `pkcs11:` URIs, no secrets): on the
command line (`--key ROLE=KEY`), in a keys file (JSON, `{"targets": ["KEY", ...], ...}`), or
remembered in the repository's `.sfu/keys.json` for the online roles (targets, snapshot,
timestamp; never root, which stays offline). Each signer is checked against the trusted root
before it signs: a key the root does not list for the role is refused, not silently used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from sfupdate.authoring.repo.tuf_signer import TufSigner
from sfupdate.errors import RoleKeyError, UsageError
from sfupdate.keys import Unlock, is_pkcs11_uri, load_signer

#: The top-level roles, root first (the order `status` shows them in).
ROLES: Final = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
ONLINE_ROLES: Final = (Targets.type, Snapshot.type, Timestamp.type)
MAX_KEYS_FILE: Final = 64 * 1024

#: role -> key references
RoleKeys = Mapping[str, Sequence[str]]


def normalise(ref: str | Path) -> str:
    """A reference as it is remembered: a URI as given, a path made absolute."""
    text = str(ref)
    return text if is_pkcs11_uri(text) else str(Path(text).resolve())


def parse_role_keys(items: Iterable[str]) -> dict[str, list[str]]:
    """`ROLE=KEY` options (repeatable, several keys per role) as role -> references; only
    the online roles (a root key is always named on its own: `--root-key`)."""
    keys: dict[str, list[str]] = {}
    for item in items:
        role, eq, ref = item.partition("=")
        if not eq or role not in ONLINE_ROLES or not ref:
            raise UsageError(f"--key {item!r}: expected ROLE=KEY, ROLE one of "
                             f"{', '.join(ONLINE_ROLES)}")
        keys.setdefault(role, []).append(normalise(ref))
    return keys


def read_keys_file(path: Path) -> dict[str, list[str]]:
    """A keys file: a JSON object of online role -> list of key references (paths are
    relative to the file's directory)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_KEYS_FILE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read keys file {path}: {exc.strerror}") from None
    if len(raw) > MAX_KEYS_FILE:
        raise UsageError(f"{path} is too large to be a keys file")
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"keys file {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(
            role in ONLINE_ROLES and isinstance(refs, list)
            and all(isinstance(r, str) for r in refs) for role, refs in data.items()):
        raise UsageError(f"keys file {path}: expected {{ROLE: [KEY, ...]}}, ROLE one of "
                         f"{', '.join(ONLINE_ROLES)}")
    return {role: [ref if is_pkcs11_uri(ref) else normalise(path.parent / ref)
                   for ref in refs] for role, refs in data.items()}


class Keyring:
    """The signing keys one command was given, per role; each key is loaded (and unlocked:
    one passphrase prompt, one token login) once however many roles it signs for."""

    def __init__(self, keys: RoleKeys, unlock: Unlock | None = None) -> None:
        self.keys = {role: list(refs) for role, refs in keys.items()}
        self._unlock = unlock
        self._loaded: dict[str, TufSigner] = {}

    def signer(self, ref: str) -> TufSigner:
        if ref not in self._loaded:
            self._loaded[ref] = TufSigner(load_signer(ref, unlock=self._unlock))
        return self._loaded[ref]

    def signers(self, role: str, root: Root, refs: Sequence[str] | None = None
                ) -> list[TufSigner]:
        """Signers for `role` (its keys here, or `refs`) that `root` lists for it, at least
        its threshold of them."""
        refs = self.keys.get(role, []) if refs is None else refs
        if not refs:
            option = "--root-key KEY" if role == Root.type else f"--key {role}=KEY or a --keys-file"
            raise RoleKeyError(f"no key for the {role} role: give {option}")
        listed = root.roles[role]
        signers = []
        for ref in dict.fromkeys(refs):
            signer = self.signer(ref)
            if signer.public_key.keyid not in listed.keyids:
                raise RoleKeyError(f"{ref} (key {signer.public_key.keyid[:16]}) is not a {role} "
                                   f"key of this repository (root version {root.version}); "
                                   "`sfu repo status` lists them")
            signers.append(signer)
        if len(signers) < listed.threshold:
            raise RoleKeyError(f"the {role} role needs {listed.threshold} keys, "
                               f"{len(signers)} given")
        return signers
