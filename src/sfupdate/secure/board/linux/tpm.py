"""A TPM 2.0, driven in-process through tpm2-pytss (the TSS's Enhanced System API).

Only what the linux backend needs: NV indices (the write-once "fuses", the storage's extend
index), a TPM-resident HMAC key, and taking the owner and lockout hierarchies away from the
Rich OS at provisioning. Each call opens the TPM the TCTI string names (`device:/dev/tpmrm0`
on a board, `swtpm:host=127.0.0.1,port=P` in tests), runs its command and closes it again, so
no process keeps a TPM connection (swtpm serves one at a time) or a transient object. A call
costs milliseconds, where a `tpm2-tools` process per command cost 0.2-0.4 s on the QEMU board.
Authorization values stay in this process's memory (password sessions, as the TPM's own
tools use them); they never reach a command line or a file. A TPM that stops answering is the
kernel driver's to time out (its TIS/CRB command timeouts): the call then fails.

tpm2-pytss is the `linux` extra (`pip install 'sfupdate[linux]'`, or Debian's
`python3-tpm2-pytss`); it is imported when a TPM is first used, so the rest of sfupdate runs
without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from sfupdate.errors import DeviceStateError

# TPMA_NV bits (TPM 2.0 Part 2, 13.4) and index types (TPM_NT).
TPMA_NV_AUTHWRITE: Final = 1 << 2
TPMA_NV_WRITELOCKED: Final = 1 << 11
TPMA_NV_WRITEDEFINE: Final = 1 << 13
TPMA_NV_WRITE_STCLEAR: Final = 1 << 14
TPMA_NV_AUTHREAD: Final = 1 << 18
TPMA_NV_NO_DA: Final = 1 << 25
TPMA_NV_CLEAR_STCLEAR: Final = 1 << 27
TPMA_NV_WRITTEN: Final = 1 << 29
TPM_NT_ORDINARY: Final = 0
TPM_NT_EXTEND: Final = 4
TPMA_NV_TYPE_SHIFT: Final = 4

# The HMAC key's TPMA_OBJECT bits (Part 2, 8.3): fixedTPM (1), fixedParent (4),
# sensitiveDataOrigin (5), userWithAuth (6), noDA (10), sign (18).
HMAC_KEY_ATTRIBUTES: Final = 1 << 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 10 | 1 << 18

# TPM_RC_HANDLE (format-one code 0x0B): the handle names nothing (Part 2, 6.6.3).
_RC_FMT1: Final = 0x080
_RC_HANDLE: Final = 0x00B


class TpmError(DeviceStateError):
    """A TPM command failed; `rc` is the TSS response code (0 if the TPM was not reached)."""

    def __init__(self, message: str, rc: int = 0) -> None:
        super().__init__(message)
        self.rc = rc

    @property
    def no_such_handle(self) -> bool:
        return bool(self.rc & _RC_FMT1) and self.rc & 0x3F == _RC_HANDLE


@dataclass(frozen=True)
class NvPublic:
    """What TPM2_NV_ReadPublic says about one NV index (its raw TPMA_NV attributes)."""

    attributes: int
    size: int

    @property
    def kind(self) -> int:
        return (self.attributes >> TPMA_NV_TYPE_SHIFT) & 0xF

    def has(self, bit: int) -> bool:
        return bool(self.attributes & bit)


def _pytss() -> Any:
    try:
        import tpm2_pytss
    except ImportError:
        raise DeviceStateError("the linux board's TPM needs tpm2-pytss (pip install "
                               "'sfupdate[linux]', or Debian's python3-tpm2-pytss)") from None
    return tpm2_pytss


class Tpm:
    def __init__(self, tcti: str) -> None:
        self.tcti = tcti

    @contextmanager
    def command(self, name: str) -> Iterator[Any]:
        """An ESAPI context on the TPM for one command (`name`: its TPM2_ name, for errors and
        for counting); closed afterwards. A TSS error becomes `TpmError`."""
        tss = _pytss()
        try:
            esys = tss.ESAPI(self.tcti)
        except tss.TSS2_Exception as exc:
            raise TpmError(f"cannot open the TPM ({self.tcti}): {exc}", int(exc.rc)) from None
        try:
            yield esys
        except tss.TSS2_Exception as exc:
            raise TpmError(f"TPM2_{name} failed ({self.tcti}): {exc}", int(exc.rc)) from None
        finally:
            esys.close()

    def _authorized(self, esys: Any, handle: int, auth: bytes) -> Any:
        """The ESAPI object for `handle` (the TSS reads its public area to know its name),
        with its authorization value set."""
        resource = esys.tr_from_tpmpublic(handle)
        if auth:
            esys.tr_set_auth(resource, auth)
        return resource

    def _query(self, name: str, handle: int, read: Callable[[Any, Any], Any]) -> Any:
        """`read(esys, resource)` on an existing object, or None if `handle` names none."""
        try:
            with self.command(name) as esys:
                return read(esys, esys.tr_from_tpmpublic(handle))
        except TpmError as exc:
            if exc.no_such_handle:
                return None
            raise

    # --- NV indices ----------------------------------------------------------------------

    def nv_public(self, index: int) -> NvPublic | None:
        """The index's attributes and size, or None if it is not defined."""
        public = self._query("NV_ReadPublic", index,
                             lambda esys, nv: esys.nv_read_public(nv)[0].nvPublic)
        return None if public is None else NvPublic(int(public.attributes),
                                                    int(public.dataSize))

    def nv_define(self, index: int, size: int, attributes: int, auth: bytes = b"",
                  owner_auth: bytes = b"") -> None:
        """TPM2_NV_DefineSpace under the owner hierarchy; `attributes`: TPMA_NV bits, the
        index type among them (TPM_NT_* << TPMA_NV_TYPE_SHIFT)."""
        tss = _pytss()
        public = tss.TPM2B_NV_PUBLIC(nvPublic=tss.TPMS_NV_PUBLIC(
            nvIndex=index, nameAlg=tss.TPM2_ALG.SHA256, attributes=attributes, dataSize=size))
        with self.command("NV_DefineSpace") as esys:
            if owner_auth:
                esys.tr_set_auth(tss.ESYS_TR.OWNER, owner_auth)
            esys.nv_define_space(auth, public)

    def nv_read(self, index: int, size: int, auth: bytes = b"") -> bytes:
        with self.command("NV_Read") as esys:
            return bytes(esys.nv_read(self._authorized(esys, index, auth), size))

    def nv_write(self, index: int, data: bytes, auth: bytes = b"") -> None:
        with self.command("NV_Write") as esys:
            esys.nv_write(self._authorized(esys, index, auth), data)

    def nv_write_lock(self, index: int, auth: bytes = b"") -> None:
        with self.command("NV_WriteLock") as esys:
            esys.nv_write_lock(self._authorized(esys, index, auth))

    def nv_extend(self, index: int, data: bytes, auth: bytes) -> None:
        """TPM2_NV_Extend: value := SHA-256(value || data), the only way the value moves."""
        with self.command("NV_Extend") as esys:
            esys.nv_extend(self._authorized(esys, index, auth), data)

    # --- keys ------------------------------------------------------------------------------

    def create_hmac_key(self, parent: int, handle: int, auth: bytes) -> None:
        """Make a primary storage key (ECC P-256) persistent at `parent` and, under it, an
        HMAC-SHA256 key the TPM generates itself (sensitiveDataOrigin: the key never exists
        outside the TPM), usable with `auth` only (userWithAuth, no admin role), persistent
        at `handle`. Transient objects are flushed whatever happens."""
        tss = _pytss()
        with self.command("CreatePrimary") as esys:
            primary = esys.create_primary(None, "ecc256:aes128cfb")[0]
            try:
                esys.evict_control(tss.ESYS_TR.OWNER, primary, parent)
            finally:
                esys.flush_context(primary)
        template = tss.TPMT_PUBLIC(type=tss.TPM2_ALG.KEYEDHASH, nameAlg=tss.TPM2_ALG.SHA256,
                                   objectAttributes=HMAC_KEY_ATTRIBUTES)
        template.parameters.keyedHashDetail.scheme.scheme = tss.TPM2_ALG.HMAC
        template.parameters.keyedHashDetail.scheme.details.hmac.hashAlg = tss.TPM2_ALG.SHA256
        sensitive = tss.TPM2B_SENSITIVE_CREATE(
            sensitive=tss.TPMS_SENSITIVE_CREATE(userAuth=tss.TPM2B_AUTH(auth)))
        with self.command("Create") as esys:
            owner = esys.tr_from_tpmpublic(parent)
            private, public = esys.create(owner, sensitive,
                                          tss.TPM2B_PUBLIC(publicArea=template))[:2]
            key = esys.load(owner, private, public)
            try:
                esys.evict_control(tss.ESYS_TR.OWNER, key, handle)
            finally:
                esys.flush_context(key)

    def key_name(self, handle: int) -> bytes | None:
        """The TPM name (SHA-256 of the public area) of a persistent key, or None."""
        name = self._query("ReadPublic", handle, lambda esys, key: esys.read_public(key)[1])
        return None if name is None else bytes(name)

    def hmac(self, handle: int, auth: bytes, data: bytes) -> bytes:
        tss = _pytss()
        with self.command("HMAC") as esys:
            return bytes(esys.hmac(self._authorized(esys, handle, auth), data,
                                   tss.TPM2_ALG.SHA256))

    def stir_random(self, entropy: bytes) -> None:
        with self.command("StirRandom") as esys:
            esys.stir_random(entropy)

    def lock_hierarchies(self, owner_auth: bytes, lockout_auth: bytes) -> None:
        """Set the owner and lockout authorizations (from empty). With values nobody keeps,
        no one can undefine an NV index, evict a persistent key or clear the TPM any more."""
        tss = _pytss()
        with self.command("HierarchyChangeAuth") as esys:
            esys.hierarchy_change_auth(tss.ESYS_TR.OWNER, owner_auth)
            esys.hierarchy_change_auth(tss.ESYS_TR.LOCKOUT, lockout_auth)
