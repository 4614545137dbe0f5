"""Formats shared by the operator and the agent, pure like sfui: signed remote commands
(COSE_Sign1 over CBOR) and attestation tokens (RFC 9711 EAT)."""

from sfupdate.formats.remote.commands import (
    ACTIONS,
    RemoteCommand,
    Target,
    read_command,
    sign_command,
    verify_command,
)
from sfupdate.formats.remote.eat import (
    AttestationClaims,
    CommandAnswer,
    IntegrityResult,
    SlotClaim,
    sign_token,
    ueid_for,
    verify_answer,
    verify_token,
)
from sfupdate.formats.remote.policy import IntegrityPolicy, Region, sign_policy, verify_policy

__all__ = [
    "ACTIONS",
    "AttestationClaims",
    "CommandAnswer",
    "IntegrityPolicy",
    "IntegrityResult",
    "Region",
    "RemoteCommand",
    "SlotClaim",
    "Target",
    "read_command",
    "sign_command",
    "sign_policy",
    "sign_token",
    "ueid_for",
    "verify_answer",
    "verify_command",
    "verify_policy",
    "verify_token",
]
