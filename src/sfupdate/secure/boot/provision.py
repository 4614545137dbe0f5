"""Factory provisioning: establish the chain of trust on a blank board, once.

Everything is checked before the first fuse is burned: the initial firmware is authenticated
with the given trust anchors, matched to vendor/class and slot size, and its digest checked.
Then: fuse the root-key hash (of the key that signs the agent bundle) and a fresh device
secret; write slot A; create the device identity key; store device info, trust anchors,
identity and the initial boot record in ONE secure-storage write (the kernel's first state);
install the agent bundle; fuse the lifecycle state last. A board with any fuse burned is
refused (DeviceStateError). The device's key-agreement key (encrypted payloads) is derived
from the identity key; its public half is returned.

The agent bundle is built and signed before, by the authors' tools (author/bundle.py);
the `sfu board provision` command, given no agent key, signs it with a one-time key that is
then forgotten: the agent of that board can never be replaced (nor forged).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.errors import (
    DeviceStateError,
    UnsupportedError,
    UsageError,
    WrongClassError,
    WrongVendorError,
)
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey, Verified
from sfupdate.secure.board.components import InstallPlan, plan_install
from sfupdate.secure.board.hal import LIFECYCLE_PROVISIONED, Board, Fuse, Slot
from sfupdate.secure.board.records import (
    BundleRecord,
    DeviceInfo,
    ImageRecord,
    Role,
    TrustStore,
    anchors_for,
)
from sfupdate.secure.board.slotio import HeaderRecorder
from sfupdate.secure.kernel import Kernel
from sfupdate.secure.kernel.agreement import agreement_public_pem
from sfupdate.secure.kernel.verify import is_agent_bundle


@dataclass(frozen=True)
class Provisioned:
    image: ImageRecord
    root_key_hash: bytes
    identity_public_pem: bytes
    trust_kids: tuple[bytes, ...]
    #: The public key-agreement key authors encrypt payloads to (sfu sign --encrypt-for).
    encryption_public_pem: bytes


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def _check(verified: Verified, board: Board, device: DeviceInfo) -> InstallPlan:
    """The facts of the initial image, as the agent records them for every install: it must
    name every component of the board (there is nothing yet to keep)."""
    info = verified.info
    if info.vendor_id != device.vendor_id:
        raise WrongVendorError.mismatch("the firmware", info.vendor_id,
                                        f"{device.vendor_id} ({device.vendor_name})")
    if info.class_id != device.class_id:
        raise WrongClassError.mismatch("the firmware", info.class_id,
                                       f"{device.class_id} ({device.class_name})")
    if verified.encryption is not None:
        raise UnsupportedError("the first image cannot be encrypted: its device key is made "
                               "at provisioning")
    return plan_install(verified, board, device, None, verified.signer.kid)


def _verify_file(firmware: Path, keys: Sequence[TrustedKey], board: Board,
                 device: DeviceInfo) -> None:
    with _open(firmware) as f:
        reader = EnvelopeReader(f)
        _check(reader.authenticate(keys), board, device)
        for _ in reader.every_payload():
            pass


def _write_slot(board: Board, slot: Slot, firmware: Path, keys: Sequence[TrustedKey],
                device: DeviceInfo) -> ImageRecord:
    with _open(firmware) as f:
        stream = HeaderRecorder(f)
        reader = EnvelopeReader(stream)
        plan = _check(reader.authenticate(keys), board, device)
        header = stream.header()
        for part, chunks in reader.payloads():
            with plan.named[part.name].writer(slot, header) as writer:
                for chunk in chunks:
                    writer.write(chunk)
                writer.finish()
    return plan.image


def _bundle_record(bundle: bytes, key: TrustedKey) -> BundleRecord:
    """The facts of the agent bundle, verified like any other before a fuse is burned: signed
    by `key`, of the agent class, its payload matching its digest."""
    reader = EnvelopeReader(io.BytesIO(bundle))
    info = reader.authenticate([key]).info
    if not is_agent_bundle(info):
        raise WrongClassError("the agent bundle is not of the agent class")
    for _ in reader.payload():
        pass
    assert info.image_digest is not None  # payload() checked it
    return BundleRecord(info.sequence_number, info.image_digest.value)


def provision(board: Board, trusted: Sequence[TrustedKey], vendor: str, klass: str,
              firmware: Path, agent_bundle: bytes, agent_key: TrustedKey,
              operators: Sequence[TrustedKey] = (),
              recovery: Sequence[TrustedKey] = (),
              payload_kek: bytes | None = None) -> Provisioned:
    """Provision a blank board (see the module docstring). Raises DeviceStateError if the
    board was provisioned before, even partly. `agent_bundle` is the signed agent bundle
    (built by the authors' tools: author/bundle.py) and `agent_key` the key that signed
    it, whose hash is fused. `operators` may sign remote commands and integrity policies;
    `recovery` keys may sign images while the device is quarantined; `payload_kek` is a
    pre-shared A128KW key-encryption key for encrypted payloads (16 bytes), kept in secure
    storage."""
    if any(board.fuses.read(fuse) is not None for fuse in Fuse):
        raise DeviceStateError("the board is already provisioned (its fuses are burned)")
    if not trusted:
        raise UsageError("provisioning needs at least one trusted firmware key (--trust)")
    kids = [k.kid for k in (*trusted, *operators, *recovery)]
    if len(set(kids)) != len(kids):
        raise UsageError("a key may hold only one role (firmware, operator or recovery), once")
    if payload_kek is not None and len(payload_kek) != 16:
        raise UsageError("a payload key-encryption key (A128KW) is 16 bytes")
    device = DeviceInfo.named(vendor, klass)
    _verify_file(firmware, trusted, board, device)
    record = _bundle_record(agent_bundle, agent_key)
    spki = agent_key.public_key.public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    board.fuses.burn(Fuse.ROOT_KEY_HASH, agent_key.kid)
    board.fuses.burn(Fuse.DEVICE_SECRET, os.urandom(32))
    image = _write_slot(board, Slot.A, firmware, trusted, device)
    identity = ec.generate_private_key(ec.SECP256R1())
    identity_der = identity.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
    identity_pem = identity.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    trust = TrustStore(anchors_for(Role.FIRMWARE, trusted) + anchors_for(Role.OPERATOR, operators)
                       + anchors_for(Role.RECOVERY, recovery))
    with board.agent.writer(Slot.A, spki) as writer:
        writer.write(agent_bundle)
        writer.finish()
    Kernel(board.storage).initialise(device, trust, identity_der, image, record, payload_kek)
    board.fuses.burn(Fuse.LIFECYCLE, LIFECYCLE_PROVISIONED)
    return Provisioned(image, agent_key.kid, identity_pem, tuple(k.kid for k in trusted),
                       agreement_public_pem(identity))
