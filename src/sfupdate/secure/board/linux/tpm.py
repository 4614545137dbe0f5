"""A TPM 2.0, driven through the `tpm2-tools` commands (Debian `tpm2-tools`).

Only what the linux backend needs: NV indices (the write-once "fuses", the storage's extend
index), a TPM-resident HMAC key, and taking the owner and lockout hierarchies away from the
Rich OS at provisioning. Each call is one short-lived `tpm2_*` process talking to the TPM the
TCTI string names (`device:/dev/tpmrm0` on a board, `swtpm:host=127.0.0.1,port=P` in tests).
Authorization values are handed over in an anonymous memory file (`file:/dev/fd/N`, a memfd:
the tools seek, so a pipe will not do), never on a command line (which every local user can
read in /proc).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sfupdate.errors import DeviceStateError

TIMEOUT: Final = 30.0
TPM_RC_HANDLE: Final = re.compile(r"\(0x[0-9a-fA-F]*18b\)|the handle is not correct")

class TpmError(DeviceStateError):
    """A TPM command failed; `output` is what the tool printed (a TPM response code in it)."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output

    def matches(self, pattern: re.Pattern[str]) -> bool:
        return bool(pattern.search(self.output))


# TPMA_NV bits (TPM 2.0 Part 2, 13.4) and index types (TPM_NT).
TPMA_NV_AUTHWRITE: Final = 1 << 2
TPMA_NV_WRITELOCKED: Final = 1 << 11
TPMA_NV_WRITEDEFINE: Final = 1 << 13
TPMA_NV_CLEAR_STCLEAR: Final = 1 << 27
TPMA_NV_WRITTEN: Final = 1 << 29
TPM_NT_ORDINARY: Final = 0
TPM_NT_EXTEND: Final = 4


@dataclass(frozen=True)
class NvPublic:
    """What `tpm2_nvreadpublic` says about one NV index (its raw TPMA_NV attributes: the
    tool's "friendly" rendering of the index type is not reliable)."""

    attributes: int
    size: int

    @property
    def kind(self) -> int:
        return (self.attributes >> 4) & 0xF

    def has(self, bit: int) -> bool:
        return bool(self.attributes & bit)


class Tpm:
    def __init__(self, tcti: str) -> None:
        self.tcti = tcti

    def run(self, args: Sequence[str], data: bytes = b"", auths: Sequence[bytes] = ()) -> bytes:
        """Run one tpm2-tools command; `auths` become `file:/dev/fd/N` memfds, replacing the
        arguments `{auth0}`, `{auth1}`... Returns stdout."""
        tool = shutil.which(args[0])
        if tool is None:
            raise DeviceStateError(f"{args[0]} is not installed (Debian package tpm2-tools)")
        fds: list[int] = []
        try:
            names: dict[str, str] = {}
            for i, auth in enumerate(auths):
                fd = os.memfd_create("tpm-auth")
                fds.append(fd)
                os.write(fd, b"hex:" + auth.hex().encode() if auth else b"")
                os.lseek(fd, 0, os.SEEK_SET)
                names[f"{{auth{i}}}"] = f"file:/dev/fd/{fd}"
            argv = [tool, *(names.get(a, a) for a in args[1:])]
            env = {**os.environ, "TPM2TOOLS_TCTI": self.tcti}
            try:
                done = subprocess.run(argv, input=data, capture_output=True, env=env,
                                      pass_fds=fds, timeout=TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                raise TpmError(f"{args[0]}: the TPM did not answer within {TIMEOUT:.0f} s",
                               "") from None
        finally:
            for fd in fds:
                os.close(fd)
        if done.returncode != 0:
            output = done.stderr.decode(errors="replace")
            last = [line for line in output.splitlines() if line.startswith("ERROR")][-1:]
            raise TpmError(f"{args[0]} failed ({self.tcti}): "
                           f"{last[0] if last else output.strip()[:200]}", output)
        return done.stdout

    # --- NV indices ----------------------------------------------------------------------

    def nv_public(self, index: int) -> NvPublic | None:
        """The index's attributes and size, or None if it is not defined."""
        try:
            out = self.run(["tpm2_nvreadpublic", f"{index:#x}"]).decode()
        except TpmError as exc:
            if exc.matches(TPM_RC_HANDLE):
                return None
            raise
        attrs = re.search(r"attributes:\s*\n\s*friendly:.*\n\s*value:\s*(0x[0-9a-fA-F]+)", out)
        size = re.search(r"\n\s*size:\s*(\d+)", out)
        if attrs is None or size is None:
            raise DeviceStateError(f"cannot parse tpm2_nvreadpublic output for {index:#x}")
        return NvPublic(int(attrs.group(1), 16), int(size.group(1)))

    def nv_define(self, index: int, size: int, attributes: str, auth: bytes = b"",
                  owner_auth: bytes = b"") -> None:
        args = ["tpm2_nvdefine", f"{index:#x}", "-C", "o", "-s", str(size), "-a", attributes,
                "-P", "{auth0}"]
        if auth:
            args += ["-p", "{auth1}"]
        self.run(args, auths=[owner_auth, auth] if auth else [owner_auth])

    def nv_read(self, index: int, size: int, auth: bytes = b"") -> bytes:
        return self.run(["tpm2_nvread", f"{index:#x}", "-C", f"{index:#x}", "-s", str(size),
                         "-P", "{auth0}"], auths=[auth])

    def nv_write(self, index: int, data: bytes, auth: bytes = b"") -> None:
        self.run(["tpm2_nvwrite", f"{index:#x}", "-C", f"{index:#x}", "-i", "-",
                  "-P", "{auth0}"], data=data, auths=[auth])

    def nv_write_lock(self, index: int, auth: bytes = b"") -> None:
        self.run(["tpm2_nvwritelock", f"{index:#x}", "-C", f"{index:#x}", "-P", "{auth0}"],
                 auths=[auth])

    def nv_extend(self, index: int, data: bytes, auth: bytes) -> None:
        """TPM2_NV_Extend: value := SHA-256(value || data), the only way the value moves."""
        self.run(["tpm2_nvextend", f"{index:#x}", "-C", f"{index:#x}", "-i", "-",
                  "-P", "{auth0}"], data=data, auths=[auth])

    # --- keys ------------------------------------------------------------------------------

    def persistent_handles(self) -> set[int]:
        out = self.run(["tpm2_getcap", "handles-persistent"]).decode()
        return {int(h, 16) for h in re.findall(r"0x[0-9a-fA-F]+", out)}

    def create_hmac_key(self, parent: int, handle: int, auth: bytes, workdir: str) -> None:
        """Make a primary storage key at `parent` and, under it, an HMAC-SHA256 key the TPM
        generates itself (sensitiveDataOrigin: the key never exists outside the TPM), usable
        with `auth` only (userWithAuth, no admin role), made persistent at `handle`."""
        ctx, pub, priv = (os.path.join(workdir, n) for n in ("key.ctx", "key.pub", "key.priv"))
        self.run(["tpm2_createprimary", "-C", "o", "-c", ctx, "-Q"])
        try:
            self.run(["tpm2_evictcontrol", "-C", "o", "-c", ctx, f"{parent:#x}", "-Q"])
        finally:
            self.flush_transient()
        self.run(["tpm2_create", "-C", f"{parent:#x}", "-G", "hmac", "-g", "sha256",
                  "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign",
                  "-p", "{auth0}", "-u", pub, "-r", priv, "-Q"], auths=[auth])
        self.run(["tpm2_load", "-C", f"{parent:#x}", "-u", pub, "-r", priv, "-c", ctx, "-Q"])
        try:
            self.run(["tpm2_evictcontrol", "-C", "o", "-c", ctx, f"{handle:#x}", "-Q"])
        finally:
            self.flush_transient()

    def key_name(self, handle: int) -> bytes | None:
        """The TPM name (SHA-256 of the public area) of a persistent key, or None."""
        try:
            out = self.run(["tpm2_readpublic", "-c", f"{handle:#x}"]).decode()
        except TpmError as exc:
            if exc.matches(TPM_RC_HANDLE):
                return None
            raise
        name = re.search(r"^name:\s*([0-9a-fA-F]+)", out, re.MULTILINE)
        if name is None:
            raise DeviceStateError(f"cannot parse tpm2_readpublic output for {handle:#x}")
        return bytes.fromhex(name.group(1))

    def hmac(self, handle: int, auth: bytes, data: bytes) -> bytes:
        return self.run(["tpm2_hmac", "-c", f"{handle:#x}", "-g", "sha256", "-p", "{auth0}"],
                        data=data, auths=[auth])

    def stir_random(self, entropy: bytes) -> None:
        self.run(["tpm2_stirrandom"], data=entropy)

    def flush_transient(self) -> None:
        self.run(["tpm2_flushcontext", "--transient-object"])

    def lock_hierarchies(self, owner_auth: bytes, lockout_auth: bytes) -> None:
        """Set the owner and lockout authorizations (from empty). With values nobody keeps,
        no one can undefine an NV index, evict a persistent key or clear the TPM any more."""
        self.run(["tpm2_changeauth", "-c", "owner", "{auth0}"], auths=[owner_auth])
        self.run(["tpm2_changeauth", "-c", "lockout", "{auth0}"], auths=[lockout_auth])
