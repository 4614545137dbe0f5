"""`TpmStorage`: secure storage in files, anchored in a TPM 2.0 (design in docs/board.md,
"The linux backend").

The records live in `DIR/store-<v>`: CBOR [sealed, mac], sealed = nonce || AES-256-GCM(E,
CBOR [n, prev, {name: bytes}]), d = SHA-256(sealed), mac = HMAC(K, context || d) computed BY
THE TPM with its resident key K; E = HMAC(K, "...encryption key v1"), also computed by the
TPM, so the records (the device identity key among them) are unreadable without this TPM.
The commit is one TPM2_NV_Extend of d into an extend-type NV index: its value goes from
`prev` to v = SHA-256(prev || d) and can never go back. A read accepts only the file named by
the index's current value, that decrypts, whose `prev` and digest chain to that value and
whose MAC the TPM recomputes. `n` is the write counter (the chain's length).

A TPM is slow (milliseconds to tens of milliseconds per command), so a process asks the TPM
nothing twice: the index's value is read once per hold of the storage lock (whoever changes
it holds the lock), and the TPM recomputes a MAC once per (digest, MAC) pair (the key is
fixed in the TPM, so its answer for the same digest cannot change). Every read still opens
the file, checks the chain and decrypts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sfupdate.errors import DeviceStateError, SfuError, StorageIntegrityError, UsageError
from sfupdate.formats.sfui import cbor
from sfupdate.secure.board.flock import ReentrantFlock
from sfupdate.secure.board.linux.tpm import (
    TPM_NT_EXTEND,
    TPMA_NV_AUTHWRITE,
    TPMA_NV_CLEAR_STCLEAR,
    TPMA_NV_WRITTEN,
    Tpm,
)
from sfupdate.secure.board.power import Power

MAX_RECORD: Final = 64 * 1024
MAX_STORE: Final = 1024 * 1024
MAC_CONTEXT: Final = b"sfupdate tpm storage mac v1"
ENCRYPTION_LABEL: Final = b"sfupdate tpm storage encryption key v1"
NONCE: Final = 12
GENESIS: Final = b"sfupdate tpm storage genesis v1"
# The index's value after provisioning extended GENESIS into it: the empty storage.
EMPTY: Final = hashlib.sha256(bytes(32) + GENESIS).digest()
_RECORD_NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")


class TpmStorage:
    """Implements `SecureStorage`. `auth` is the authorization of the TPM key and NV index
    (known only to the agent's user)."""

    def __init__(self, directory: Path, tpm: Tpm, key: int, index: int, auth: bytes,
                 power: Power) -> None:
        self._dir = directory
        self._tpm = tpm
        self._key = key
        self._index = index
        self._auth = auth
        self._power = power
        self._index_checked = False
        self._cipher: AESGCM | None = None
        self.lock = ReentrantFlock(directory / ".lock")
        self._value: tuple[int, bytes] | None = None  # (lock hold, the index's value then)
        self._macs: dict[bytes, bytes] = {}  # digest -> the MAC the TPM computed for it

    def _mac(self, digest: bytes) -> bytes:
        mac = self._tpm.hmac(self._key, self._auth, MAC_CONTEXT + digest)
        self._macs[digest] = mac
        return mac

    def _mac_verifies(self, digest: bytes, mac: bytes) -> bool:
        known = self._macs.get(digest)
        return hmac.compare_digest(known if known is not None else self._mac(digest), mac)

    @property
    def _aead(self) -> AESGCM:
        if self._cipher is None:
            self._cipher = AESGCM(self._tpm.hmac(self._key, self._auth, ENCRYPTION_LABEL))
        return self._cipher

    def _chain(self) -> bytes:
        """The extend index's value, after checking (once) that it is what provisioning
        defined: an extend index only the authorized can write, never cleared at startup."""
        if not self._index_checked:
            public = self._tpm.nv_public(self._index)
            if public is None:
                raise DeviceStateError(f"the TPM has no storage index {self._index:#x}: the "
                                       "board is not provisioned (or the TPM was cleared)")
            if public.kind != TPM_NT_EXTEND or public.size != 32 \
                    or not public.has(TPMA_NV_AUTHWRITE) or not public.has(TPMA_NV_WRITTEN) \
                    or public.has(TPMA_NV_CLEAR_STCLEAR):
                raise StorageIntegrityError(f"TPM NV index {self._index:#x} is not the "
                                            "storage's extend index (it was redefined)")
            self._index_checked = True
        if self._value is not None and self._value[0] == self.lock.hold:
            return self._value[1]
        value = self._tpm.nv_read(self._index, 32, self._auth)
        self._value = (self.lock.hold, value)
        return value

    def _load(self) -> tuple[bytes, int, dict[str, bytes]]:
        """(chain value, write counter, records) of the committed storage."""
        value = self._chain()
        if value == EMPTY:
            return value, 0, {}
        path = self._dir / f"store-{value.hex()}"
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_STORE + 1)
        except FileNotFoundError:
            raise StorageIntegrityError("the secure storage file the TPM's index names is "
                                        "missing (deleted, or an old copy put back)") from None
        if len(raw) > MAX_STORE:
            raise StorageIntegrityError("secure storage is larger than any the board writes")
        try:
            sealed, mac = cbor.loads(raw, "secure storage")
            digest = hashlib.sha256(sealed).digest()
            body = self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], MAC_CONTEXT)
            counter, prev, records = cbor.loads(body, "secure storage body")
        except InvalidTag:
            raise StorageIntegrityError("secure storage does not decrypt with this TPM's "
                                        "key") from None
        except (SfuError, ValueError, TypeError) as exc:
            raise StorageIntegrityError(f"secure storage is malformed: {exc}") from None
        if not isinstance(prev, bytes) or not isinstance(counter, int) \
                or not isinstance(records, dict) or not isinstance(mac, bytes) \
                or not hmac.compare_digest(hashlib.sha256(prev + digest).digest(), value):
            raise StorageIntegrityError("secure storage does not match the TPM's index: an "
                                        "old or altered copy was put back")
        if not self._mac_verifies(digest, mac):
            raise StorageIntegrityError("secure storage MAC does not verify with the TPM key")
        return value, counter, {k: v for k, v in records.items() if isinstance(v, bytes)}

    @property
    def write_counter(self) -> int:
        with self.lock():
            return self._load()[1]

    def read(self, name: str) -> bytes | None:
        return self.read_all().get(name)

    def names(self) -> list[str]:
        return sorted(self.read_all())

    def read_all(self) -> dict[str, bytes]:
        with self.lock():
            return self._load()[2]

    def write(self, changes: Mapping[str, bytes | None]) -> None:
        """Write `store-<v'>` (fsync, fsync directory), then extend the index: the commit.
        A cut before the extend leaves the old state (the new file is never named by the
        index: the chain pins its content), a cut after it the new one."""
        for name, value in changes.items():
            if not _RECORD_NAME.fullmatch(name):
                raise UsageError(f"bad secure storage record name {name!r}")
            if value is not None and len(value) > MAX_RECORD:
                raise UsageError(f"secure storage record {name} is too large")
        with self.lock():
            prev, counter, records = self._load()
            for name, value in changes.items():
                if value is None:
                    records.pop(name, None)
                else:
                    records[name] = value
            nonce = os.urandom(NONCE)
            sealed = nonce + self._aead.encrypt(nonce, cbor.dumps([counter + 1, prev, records]),
                                                MAC_CONTEXT)
            digest = hashlib.sha256(sealed).digest()
            raw = cbor.dumps([sealed, self._mac(digest)])
            if len(raw) > MAX_STORE:
                raise UsageError("secure storage is full")
            value = hashlib.sha256(prev + digest).digest()
            path = self._dir / f"store-{value.hex()}"
            self._power.write_new(path, raw)
            self._power.fsync_dir(self._dir)
            self._value = None  # if the extend's answer is lost, the next read asks the TPM
            self._tpm.nv_extend(self._index, digest, self._auth)
            self._value = (self.lock.hold, value)
            for stale in self._dir.glob("store-*"):
                if stale.name != path.name:
                    self._power.unlink(stale)
