"""TpmStorage and TpmFuses against a real (software) TPM: round trip, rollback and forgery
detection, power cuts around the commit, and the write-once fuses."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tpm2_pytss import ESYS_TR

from sfupdate.errors import DeviceStateError, StorageIntegrityError
from sfupdate.formats.sfui import cbor
from sfupdate.secure.board.hal import Fuse
from sfupdate.secure.board.linux.fuses import TpmFuses, TpmLayout, read_auth
from sfupdate.secure.board.linux.storage import MAC_CONTEXT, TpmStorage
from sfupdate.secure.board.linux.tpm import (
    TPMA_NV_AUTHREAD,
    TPMA_NV_AUTHWRITE,
    TPMA_NV_NO_DA,
    TPMA_NV_WRITE_STCLEAR,
    TpmError,
)
from sfupdate.secure.board.power import Power, PowerCut
from tests.board.linux.conftest import CountingTpm, SoftTpm

LAYOUT = TpmLayout()


def provisioned(root: Path, soft: SoftTpm) -> TpmFuses:
    fuses = TpmFuses(soft.tpm, LAYOUT, root / "tpm-auth")
    fuses.burn(Fuse.DEVICE_SECRET, os.urandom(32))
    return fuses


def storage(root: Path, soft: SoftTpm, power: Power | None = None) -> TpmStorage:
    return TpmStorage(root, soft.tpm, LAYOUT.key, LAYOUT.storage,
                      read_auth(root / "tpm-auth"), power or Power())


@pytest.fixture
def root(tmp_path: Path, swtpm: SoftTpm) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    provisioned(root, swtpm)
    return root


def test_round_trip_and_atomic_multi_record_write(root: Path, swtpm: SoftTpm) -> None:
    s = storage(root, swtpm)
    assert s.read_all() == {} and s.write_counter == 0
    s.write({"one": b"1", "two": b"2"})
    s.write({"one": None, "three": b"3"})
    assert s.names() == ["three", "two"]
    assert storage(root, swtpm).read("two") == b"2"
    assert s.write_counter == 2
    assert len(list(root.glob("store-*"))) == 1


def test_an_old_copy_put_back_is_detected(root: Path, swtpm: SoftTpm, tmp_path: Path) -> None:
    s = storage(root, swtpm)
    s.write({"floor": b"1"})
    [old] = root.glob("store-*")
    saved = tmp_path / "saved"
    shutil.copy(old, saved)
    s.write({"floor": b"7"})
    [new] = root.glob("store-*")
    new.unlink()
    shutil.copy(saved, old)  # under its own name: the index names another file
    with pytest.raises(StorageIntegrityError, match="missing"):
        storage(root, swtpm).read("floor")
    shutil.copy(saved, new)  # renamed to the name the index expects
    with pytest.raises(StorageIntegrityError, match="does not match the TPM"):
        storage(root, swtpm).read("floor")


def test_a_forged_mac_or_body_is_detected(root: Path, swtpm: SoftTpm) -> None:
    s = storage(root, swtpm)
    s.write({"floor": b"1"})
    [path] = root.glob("store-*")
    sealed, mac = cbor.loads(path.read_bytes(), "test")
    path.write_bytes(cbor.dumps([sealed, bytes(32)]))
    with pytest.raises(StorageIntegrityError, match="MAC"):
        s.read_all()
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    path.write_bytes(cbor.dumps([flipped, mac]))
    with pytest.raises(StorageIntegrityError, match="does not decrypt"):
        s.read_all()
    # even with the TPM's keys (root on the device), a body the index did not commit fails
    counter, prev, _ = cbor.loads(s._aead.decrypt(sealed[:12], sealed[12:],
                                                   MAC_CONTEXT), "test")
    forged = sealed[:12] + s._aead.encrypt(sealed[:12], cbor.dumps([counter, prev,
                                                                     {"floor": b"0"}]),
                                           MAC_CONTEXT)
    path.write_bytes(cbor.dumps([forged, s._mac(hashlib.sha256(forged).digest())]))
    with pytest.raises(StorageIntegrityError, match="does not match the TPM"):
        s.read_all()


def test_a_transition_asks_the_tpm_for_the_index_once_and_for_each_mac_once(
        root: Path, swtpm: SoftTpm) -> None:
    """Each TPM command is a round trip to a slow device: within one hold of the
    storage lock the index is read once, and a MAC the TPM computed is not asked again."""
    tpm = CountingTpm(swtpm.tcti)
    s = TpmStorage(root, tpm, LAYOUT.key, LAYOUT.storage, read_auth(root / "tpm-auth"),
                   Power())
    s.write({"floor": b"1"})
    tpm.commands.clear()
    with s.lock():  # what the kernel does for a transition: read, then write, one hold
        assert s.read_all() == {"floor": b"1"}
        s.write({"floor": b"2"})
    assert tpm.commands == ["NV_Read", "HMAC", "NV_Extend"]
    tpm.commands.clear()
    assert s.read_all() == {"floor": b"2"}  # a new hold: the index again, its MAC is known
    assert tpm.commands == ["NV_Read"]
    tpm.commands.clear()
    assert storage(root, swtpm).read_all() == {"floor": b"2"}  # another process: all of it


def test_records_are_encrypted_at_rest(root: Path, swtpm: SoftTpm) -> None:
    storage(root, swtpm).write({"identity": b"PRIVATE KEY MARKER"})
    [path] = root.glob("store-*")
    assert b"PRIVATE KEY MARKER" not in path.read_bytes()
    assert storage(root, swtpm).read("identity") == b"PRIVATE KEY MARKER"


def test_storage_of_another_tpm_is_refused(tmp_path: Path, root: Path, swtpm: SoftTpm) -> None:
    """The same files served by a second TPM (another device): its index and key differ."""
    from tests.board.linux.conftest import start_swtpm, stop_swtpm
    storage(root, swtpm).write({"floor": b"1"})
    other = start_swtpm(tmp_path / "other-tpm")
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        provisioned(elsewhere, other)
        for path in root.glob("store-*"):
            shutil.copy(path, elsewhere)
        with pytest.raises(DeviceStateError):  # its auth is not that TPM's
            TpmStorage(elsewhere, other.tpm, LAYOUT.key, LAYOUT.storage,
                       read_auth(root / "tpm-auth"), Power()).read_all()
        assert storage(elsewhere, other).read_all() == {}  # its own index: still empty
    finally:
        stop_swtpm(other)


def test_the_agent_authorization_is_required(root: Path, swtpm: SoftTpm) -> None:
    s = TpmStorage(root, swtpm.tpm, LAYOUT.key, LAYOUT.storage, bytes(32), Power())
    with pytest.raises(TpmError, match="TPM2_NV_Read failed"):
        s.read_all()
    with pytest.raises(TpmError):
        swtpm.tpm.nv_extend(LAYOUT.storage, b"x" * 32, b"")


@pytest.mark.parametrize("cut_at", range(1, 6))
def test_power_cut_during_a_write_leaves_old_or_new(root: Path, swtpm: SoftTpm,
                                                    cut_at: int) -> None:
    """Operations of a write: 1 write store file, 2 fsync it, 3 fsync directory, (the TPM
    extend: the commit), 4 unlink the stale file. Before the extend: old; after: new."""
    storage(root, swtpm).write({"a": b"old", "b": b"old"})
    cut = storage(root, swtpm, Power(cut_at))
    if cut_at <= 4:
        with pytest.raises(PowerCut):
            cut.write({"a": b"new", "b": b"new"})
    else:
        cut.write({"a": b"new", "b": b"new"})
    after = storage(root, swtpm)
    expected = b"old" if cut_at <= 3 else b"new"
    assert after.read_all() == {"a": expected, "b": expected}
    after.write({"a": b"next", "b": b"next"})  # writes go on; stale files are cleaned up
    assert after.read_all() == {"a": b"next", "b": b"next"}
    assert len(list(root.glob("store-*"))) == 1


def test_a_pending_write_cannot_be_committed_later(root: Path, swtpm: SoftTpm,
                                                   tmp_path: Path) -> None:
    """The crash window between the fsync and the extend: the file written for a write that
    never committed, kept by an attacker and put back after a later write under the name the
    index then expects, is refused (the extend pinned the later write's digest, not its
    number)."""
    storage(root, swtpm).write({"floor": b"1"})
    with pytest.raises(PowerCut):
        storage(root, swtpm, Power(3)).write({"floor": b"2"})
    kept = {p.name: p.read_bytes() for p in root.glob("store-*")}
    assert len(kept) == 2
    s = storage(root, swtpm)
    assert s.read("floor") == b"1"
    s.write({"floor": b"3"})
    [committed] = root.glob("store-*")
    for data in kept.values():
        committed.write_bytes(data)
        with pytest.raises(StorageIntegrityError):
            storage(root, swtpm).read_all()


WRITER = """
import sys
from pathlib import Path
from sfupdate.secure.board.linux.storage import MAC_CONTEXT, TpmStorage
from sfupdate.secure.board.linux.fuses import TpmLayout, read_auth
from sfupdate.secure.board.linux.tpm import Tpm
from sfupdate.secure.board.power import Power
root, tcti = Path(sys.argv[1]), sys.argv[2]
layout = TpmLayout()
s = TpmStorage(root, Tpm(tcti), layout.key, layout.storage, read_auth(root / "tpm-auth"),
               Power())
n = int(s.read("n") or b"0")
while True:
    n += 1
    s.write({"n": str(n).encode(), "copy": str(n).encode()})
    print(n, flush=True)
"""


def test_kill_9_during_writes_leaves_a_consistent_state(root: Path, swtpm: SoftTpm) -> None:
    """A real process (with the tpm2 tool it is running) killed at random points, and the
    TPM power-cycled: the storage is always old-or-new, both records of one write together,
    never behind what was acknowledged."""
    for delay in (0.35, 0.6, 0.9, 1.2):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), swtpm.tcti],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        swtpm.power_cycle()
        acknowledged = int(out.split()[-1]) if out.split() else 0
        records = storage(root, swtpm).read_all()
        n = int(records.get("n", b"0"))
        assert records.get("n") == records.get("copy")
        assert acknowledged <= n <= acknowledged + 1


def test_fuses_are_write_once_and_lifecycle_locks_the_tpm(tmp_path: Path,
                                                          swtpm: SoftTpm) -> None:
    fuses = TpmFuses(swtpm.tpm, LAYOUT, tmp_path / "tpm-auth")
    assert all(fuses.read(f) is None for f in Fuse)
    fuses.burn(Fuse.ROOT_KEY_HASH, b"\x11" * 32)
    fuses.burn(Fuse.DEVICE_SECRET, os.urandom(32))
    assert fuses.read(Fuse.ROOT_KEY_HASH) == b"\x11" * 32
    name = fuses.read(Fuse.DEVICE_SECRET)
    assert name is not None and len(name) == 34  # the key's TPM name, not the secret
    assert (tmp_path / "tpm-auth").stat().st_mode & 0o777 == 0o400
    for fuse in (Fuse.ROOT_KEY_HASH, Fuse.DEVICE_SECRET):
        with pytest.raises(DeviceStateError, match="already burned"):
            fuses.burn(fuse, b"\x22" * 32)
    with pytest.raises(TpmError, match="TPM2_NV_Write failed"):  # the TPM itself refuses
        swtpm.tpm.nv_write(LAYOUT.root_key_hash, b"\x22" * 32)
    fuses.burn(Fuse.LIFECYCLE, b"provisioned")
    assert fuses.read(Fuse.LIFECYCLE) == b"provisioned"
    # the owner hierarchy is gone: nothing can undefine the fuses or the storage index,
    # evict the key, or define new indices any more
    for index in (LAYOUT.storage, LAYOUT.root_key_hash):
        with pytest.raises(TpmError), swtpm.tpm.command("NV_UndefineSpace") as esys:
            esys.nv_undefine_space(esys.tr_from_tpmpublic(index))
    with pytest.raises(TpmError), swtpm.tpm.command("EvictControl") as esys:
        esys.evict_control(ESYS_TR.OWNER, esys.tr_from_tpmpublic(LAYOUT.key), LAYOUT.key)
    with pytest.raises(TpmError), swtpm.tpm.command("Clear") as esys:
        esys.clear(ESYS_TR.LOCKOUT)
    assert fuses.read(Fuse.ROOT_KEY_HASH) == b"\x11" * 32


def test_a_look_alike_fuse_index_is_refused(tmp_path: Path, swtpm: SoftTpm) -> None:
    """An index someone defined before provisioning, locked only until the next reset."""
    swtpm.tpm.nv_define(LAYOUT.root_key_hash, 32, TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE
                        | TPMA_NV_WRITE_STCLEAR | TPMA_NV_NO_DA)
    swtpm.tpm.nv_write(LAYOUT.root_key_hash, b"\x11" * 32)
    swtpm.tpm.nv_write_lock(LAYOUT.root_key_hash)
    with pytest.raises(DeviceStateError, match="not write-once"):
        TpmFuses(swtpm.tpm, LAYOUT, tmp_path / "tpm-auth").read(Fuse.ROOT_KEY_HASH)


def test_the_tpm_is_driven_in_process_without_a_tool_process(
        root: Path, swtpm: SoftTpm, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each TPM command was a tpm2-tools process (0.2-0.4 s on the QEMU board, 11 per boot):
    now none is started; with no program on PATH a transition still reads, MACs and
    extends through the TPM."""
    monkeypatch.setenv("PATH", "")
    s = storage(root, swtpm)
    s.write({"floor": b"1"})
    assert storage(root, swtpm).read_all() == {"floor": b"1"}


def test_without_tpm2_pytss_the_tpm_is_refused_with_a_clear_error(
        swtpm: SoftTpm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tpm2_pytss", None)  # import fails
    with pytest.raises(DeviceStateError, match=r"tpm2-pytss.*sfupdate\[linux\]"):
        swtpm.tpm.nv_public(LAYOUT.storage)
