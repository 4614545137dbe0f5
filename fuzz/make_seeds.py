"""(Re)create the seed corpora from the draft's examples and freshly signed SFUIs.

Each seed is prefixed with the target-selector byte the harness expects.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import tempfile
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from sfupdate.authoring.author import ImageSpec, sign_firmware
from sfupdate.authoring.author.encrypt import PayloadEncryption
from sfupdate.formats.ipc.messages import (
    ConfirmRequest,
    ErrorReply,
    InstallBegin,
    InstallEnd,
    InstallResult,
    ReadyReply,
    RejectTrialRequest,
    StatusRequest,
    chunk_frame,
    encode_reply,
    encode_request,
)
from sfupdate.formats.sfui import cbor, class_uuid, vendor_uuid
from sfupdate.keys import load_signer

ROOT = Path(__file__).parent
EXAMPLES = ROOT.parent / "tests" / "data" / "suit-examples"
ENCRYPTION_EXAMPLES = ROOT.parent / "tests" / "data" / "suit-encryption-examples"


def write(corpus: Path, data: bytes) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)


def sfui_seeds() -> None:
    corpus = ROOT / "corpus" / "sfui"
    for example in sorted(EXAMPLES.glob("example*.cbor")):
        envelope = example.read_bytes()
        write(corpus, b"\x00" + envelope)
        members = cbor2.loads(envelope).value
        write(corpus, b"\x01" + members[3])  # the manifest alone
        if 23 in members:
            write(corpus, b"\x02" + members[23])
        if 20 in members:
            write(corpus, b"\x03" + members[20])
    # One of ours, signed with the draft's example key (trusted by the harness), so the
    # fuzzer starts past authentication and into payload streaming.
    with tempfile.TemporaryDirectory() as tmp:
        firmware, out = Path(tmp) / "fw.bin", Path(tmp) / "fw.sfui"
        firmware.write_bytes(b"seed firmware " * 8)
        spec = ImageSpec(1, vendor_uuid("example.com"), class_uuid(vendor_uuid("example.com"),
                                                                   "fuzz"), "1.0", "seed")
        signer = load_signer(EXAMPLES / "example-key-private.pem")
        sign_firmware(firmware, out, signer, spec)
        write(corpus, b"\x00" + out.read_bytes())
    encryption_seeds(corpus)


def encryption_seeds(corpus: Path) -> None:
    """The draft's SUIT_Encryption_Info examples (target 4), and an encrypted SFUI of ours."""
    for example in sorted(ENCRYPTION_EXAMPLES.glob("suit-encryption-info-*.hex")):
        write(corpus, b"\x04" + bytes.fromhex("".join(example.read_text().split())))
    with tempfile.TemporaryDirectory() as tmp:
        firmware, out = Path(tmp) / "fw.bin", Path(tmp) / "fw.sfui"
        firmware.write_bytes(b"seed firmware " * 8)
        spec = ImageSpec(2, vendor_uuid("example.com"), class_uuid(vendor_uuid("example.com"),
                                                                   "fuzz"), "2.0", "encrypted")
        recipient = ec.generate_private_key(ec.SECP256R1()).public_key()
        sign_firmware(firmware, out, load_signer(EXAMPLES / "example-key-private.pem"), spec,
                      encryption=PayloadEncryption([recipient], [bytes(16)]))
        write(corpus, b"\x00" + out.read_bytes())


def ipc_seeds() -> None:
    corpus = ROOT / "corpus" / "ipc"
    frames = [cbor.dumps(encode_request(r)) for r in (
        StatusRequest(), InstallBegin(1234), InstallBegin(None), InstallEnd(),
        ConfirmRequest(), RejectTrialRequest())]
    frames.append(b"".join(chunk_frame(b"chunk data")))
    framed = [struct.pack(">I", len(f)) + f for f in frames]
    write(corpus, b"\x00" + b"".join(framed))  # a whole session
    for frame in framed:
        write(corpus, b"\x00" + frame)
    for reply in (ReadyReply(), ErrorReply("downgrade", "sequence 1 is not above 2"),
                  InstallResult("B", 2, "ab" * 32)):
        write(corpus, b"\x01" + cbor.dumps(encode_reply(reply)))


def index_seeds() -> None:
    """The metadata files of a freshly published repository, one per selector."""
    import fuzz_index  # builds a repository on import

    corpus = ROOT / "corpus" / "index"
    for selector, path in enumerate(fuzz_index.FILES):
        write(corpus, bytes([selector]) + fuzz_index.PRISTINE[path])
    targets = json.loads(fuzz_index.PRISTINE[fuzz_index.FILES[2]])["signed"]["targets"]
    for info in targets.values():
        write(corpus, b"\x03" + json.dumps(info).encode())


def delta_seeds() -> None:
    """SFD2 patches (LZMA2, zstd and stored sections) against the harness's base, and a zstd
    frame."""
    import zstandard

    from sfupdate.authoring.author.delta import FAST, SMALLEST, Profile, make_patch

    corpus = ROOT / "corpus" / "delta"
    base = bytes(range(256)) * 64
    new = base[:5000] + b"inserted " * 40 + base[6000:12000] + bytes(1000)
    size = len(new).to_bytes(2, "big")
    for profile in (SMALLEST, FAST, Profile((), 8)):
        write(corpus, b"\x00" + size + make_patch(base, new, profile))
    write(corpus, b"\x01" + size + zstandard.ZstdCompressor().compress(new))


def remote_seeds() -> None:
    """A trust update, a command, a policy and an attestation token, each signed with the
    draft's example key (which the harness trusts), and each payload alone."""
    import uuid

    import fuzz_remote
    from cryptography.hazmat.primitives import serialization

    from sfupdate.formats.remote import RemoteCommand, Target, sign_command
    from sfupdate.formats.remote.eat import (
        AttestationClaims,
        IntegrityResult,
        SlotClaim,
        sign_token,
        ueid_for,
    )
    from sfupdate.formats.remote.policy import IntegrityPolicy, Region, sign_policy
    from sfupdate.formats.remote.trust import RoleKeys, TrustUpdate, sign_trust_update

    corpus = ROOT / "corpus" / "remote"
    signer = load_signer(EXAMPLES / "example-key-private.pem")
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    target = Target(vendor_id=uuid.UUID(int=1), class_id=uuid.UUID(int=2))
    update = TrustUpdate(target, 2, (RoleKeys("firmware", 2, (fuzz_remote.SPKI, other)),))
    command = RemoteCommand(Target(ueid=bytes(33)), 7, "inspect", {"nonce": fuzz_remote.NONCE})
    policy = IntegrityPolicy(target, 3, (Region("agent", bytes(32), path="/usr/bin/sfu"),
                                         Region("head", bytes(32), slot="running", length=4096)))
    claims = AttestationClaims(
        fuzz_remote.NONCE, ueid_for(fuzz_remote.KEY.public_key), uuid.UUID(int=1),
        uuid.UUID(int=2), (SlotClaim("A", "confirmed", 1, bytes(32)),), "A", None, 1,
        (bytes(32),), (IntegrityResult("agent", 1),), 1_800_000_000)
    for selector, signed, payload in (
            (0, sign_trust_update(update, [signer]), update.encode()),
            (1, sign_command(command, signer), command.encode()),
            (2, sign_policy(policy, signer), policy.encode()),
            (3, sign_token(claims, signer), claims.encode())):
        write(corpus, bytes([selector]) + signed)
        write(corpus, bytes([selector + 4]) + payload)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sfui_seeds()
    ipc_seeds()
    index_seeds()
    delta_seeds()
    remote_seeds()
    sys.exit(0)
