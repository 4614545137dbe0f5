"""Coverage-guided fuzzing (atheris) of the signed objects that reach the agent or the
operator outside an SFUI: trust updates, remote commands, integrity policies and attestation
tokens.

    python fuzz/fuzz_remote.py fuzz/work/remote fuzz/corpus/remote -max_total_time=60

The first input byte picks the target. The signed targets trust the draft's example key (the
seeds are signed with it, so the fuzzer starts past the signature); a verified trust update
is then judged against a trust store the way the kernel judges it (`authorize` and
`rotated`, pure functions). The unsigned targets parse the payload an attacker holding a key
could sign. Any exception other than sfupdate.errors.SfuError is a finding.
"""

from __future__ import annotations

from pathlib import Path

import atheris

with atheris.instrument_imports():
    from cryptography.hazmat.primitives import serialization

    from sfupdate.formats.remote import verify_command
    from sfupdate.formats.remote.commands import RemoteCommand
    from sfupdate.formats.remote.eat import AttestationClaims, verify_token
    from sfupdate.formats.remote.policy import IntegrityPolicy, verify_policy
    from sfupdate.formats.remote.trust import TrustUpdate, verify_trust_update
    from sfupdate.keys import load_public_key
    from sfupdate.secure.board.records import Role, TrustAnchor, TrustStore
    from sfupdate.secure.kernel.rotation import authorize, rotated

from harness import fuzz, selecting  # fuzz/harness.py: what every harness shares

KEY = load_public_key(
    Path(__file__).parent.parent / "tests" / "data" / "suit-examples" / "example-key-public.pem")
#: The nonce the token seeds answer.
NONCE = bytes(range(16))
SPKI = KEY.public_key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
#: Firmware and operator anchors: the example key (what the seeds' signatures verify with).
STORE = TrustStore((TrustAnchor(Role.FIRMWARE, SPKI), TrustAnchor(Role.OPERATOR, SPKI)), 1, ())


def judge_trust_update(data: bytes) -> None:
    update, keys = verify_trust_update(data, [KEY])
    authorize(STORE, update, [key.kid for key in keys])
    rotated(STORE, update)


TARGETS = [
    judge_trust_update,
    lambda data: verify_command(data, [KEY]),
    lambda data: verify_policy(data, [KEY]),
    lambda data: verify_token(data, KEY, NONCE),
    TrustUpdate.decode,
    RemoteCommand.decode,
    IntegrityPolicy.decode,
    AttestationClaims.decode,
]


test_one_input = selecting(TARGETS)

if __name__ == "__main__":
    fuzz(test_one_input)
