"""The boot ROM: verify the agent bundle against the OTP root-key hash, then run exactly the
verified bytes.

    boot_log.reset()                       PCR := 0
    key   := agent partition's signer key; SHA-256(SPKI) must equal the ROOT_KEY_HASH fuse
    agent := the bundle SFUI, authenticated with that key (class sfu-agent), its payload
             streamed into a private temporary file while hashed
    boot_log.extend("agent", image digest)
    run stage 2 from that file: `python -I agent.pyz boot BOARD` (`run_bundle`)

A bundle that fails any check never runs: the error propagates and nothing on the board
changes except the boot log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sfupdate import errors
from sfupdate.board.hal import Board, Fuse
from sfupdate.board.power import POWER_CUT_ENV, POWER_CUT_EXIT, Power, PowerCut
from sfupdate.board.slotio import ChainStream
from sfupdate.boot.bundle import AGENT_CLASS, AGENT_VENDOR
from sfupdate.boot.stage2 import BootResult
from sfupdate.errors import AuthenticationError, DeviceStateError, SfuError, WrongClassError
from sfupdate.sfui import EnvelopeReader, TrustedKey

STAGE2_TIMEOUT: Final = 120

Stage2 = Callable[[Path], BootResult]


def _fused_key(board: Board) -> TrustedKey:
    fused = board.fuses.read(Fuse.ROOT_KEY_HASH)
    if fused is None:
        raise DeviceStateError("no root-key hash is fused: the board is not provisioned")
    spki = board.agent.signer_key()
    if spki is None:
        raise DeviceStateError("the agent partition holds no signer key")
    if not hmac.compare_digest(hashlib.sha256(spki).digest(), fused):
        raise AuthenticationError("the agent bundle's signer key does not match the root-key "
                                  "hash fused in OTP")
    try:
        key = serialization.load_der_public_key(spki)
    except ValueError:
        raise AuthenticationError("the agent bundle's signer key is unreadable") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise AuthenticationError("the agent bundle's signer key has an unsupported type")
    return TrustedKey(key)


def verify_agent(board: Board, out: BinaryIO) -> bytes:
    """Authenticate the agent bundle and write its verified payload (the zipapp) to `out`.
    Returns the payload digest. Raises before `out` is complete on any failure."""
    key = _fused_key(board)
    reader = EnvelopeReader(cast(BinaryIO, ChainStream(b"", board.agent.stream())))
    verified = reader.authenticate([key])
    if verified.info.vendor_id != AGENT_VENDOR or verified.info.class_id != AGENT_CLASS:
        raise WrongClassError("the agent partition holds an image that is not an agent bundle")
    for chunk in reader.payload():  # PayloadDigestError after the last chunk if tampered
        out.write(chunk)
    out.flush()
    digest = verified.info.image_digest
    assert digest is not None  # payload() checked it
    return digest.value


def boot(board: Board, stage2: Stage2) -> BootResult:
    """Reset the boot log, verify and measure the agent, then hand over to `stage2`."""
    board.boot_log.reset()
    with tempfile.TemporaryDirectory(prefix="sfu-boot-") as tmp:
        bundle = Path(tmp) / "agent.pyz"
        with open(bundle, "wb") as out:
            digest = verify_agent(board, out)
        board.boot_log.extend("agent", digest, "sfupdate agent bundle")
        return stage2(bundle)


def run_bundle(board_dir: Path, power: Power | None = None) -> Stage2:
    """Stage 2 as a separate interpreter running the verified zipapp. A power cut armed in
    `power` and not yet reached is handed over to it."""

    def run(bundle: Path) -> BootResult:
        env = dict(os.environ)
        env.pop(POWER_CUT_ENV, None)
        if power is not None and power.cut_at is not None and power.cut_at > power.ops:
            env[POWER_CUT_ENV] = str(power.cut_at - power.ops)
        proc = subprocess.run([sys.executable, "-I", str(bundle), "boot", str(board_dir)],
                              capture_output=True, text=True, env=env, timeout=STAGE2_TIMEOUT,
                              check=False)
        if proc.returncode == POWER_CUT_EXIT:
            raise PowerCut(proc.stderr.strip().removeprefix("sfu: ") + " in stage 2")
        try:
            reply = json.loads(proc.stdout)
        except ValueError:
            raise SfuError(f"the agent bundle failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}") from None
        if proc.returncode == 0:
            return BootResult(**reply)
        cls = getattr(errors, str(reply.get("error")), SfuError)
        if not (isinstance(cls, type) and issubclass(cls, SfuError)):
            cls = SfuError
        raise cls(str(reply.get("message")))

    return run
