"""The agent's view of its trust anchors: the keys it accepts for each role, read from
replay-protected secure storage (so a revoked key cannot come back by restoring an old copy).
"""

from __future__ import annotations

from sfupdate.board.hal import SecureStorage
from sfupdate.board.records import RECORD_TRUST, Role, TrustStore
from sfupdate.errors import DeviceStateError
from sfupdate.sfui import TrustedKey


def load_trust_store(storage: SecureStorage) -> TrustStore:
    """The stored trust store; DeviceStateError on an unprovisioned board, and
    StorageIntegrityError (from the storage or the record) if it was tampered with."""
    raw = storage.read(RECORD_TRUST)
    if raw is None:
        raise DeviceStateError("the board holds no trust anchors: it is not provisioned")
    return TrustStore.decode(raw)


def firmware_keys(storage: SecureStorage) -> list[TrustedKey]:
    """The active keys that may sign firmware images."""
    keys = load_trust_store(storage).keys(Role.FIRMWARE)
    if not keys:
        raise DeviceStateError("the board trusts no firmware signing key")
    return keys
