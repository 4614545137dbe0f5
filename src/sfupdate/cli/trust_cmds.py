"""Trust-anchor rotation: `sfu remote trust-sign` (make and sign a trust update),
`sfu remote trust-cosign` (add a signature, where another key holder is) and the carrier
`sfu client trust` (in delivery_cmds: the client hands it to the agent, which applies it only
when the current threshold of each changed role signed). cli/main.py adds them to `sfu remote`.
Format: sfupdate.formats.remote.trust; docs/keys.md."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from sfupdate import keys
from sfupdate.authoring.operator import target_for
from sfupdate.cli.key_options import KEY_METAVAR, unlock, unlock_options
from sfupdate.cli.render import (
    emit_json,
    json_option,
    read_bounded,
    target_options,
    write_output,
)
from sfupdate.errors import UsageError
from sfupdate.formats.remote.trust import (
    MAX_ROLE_KEYS,
    MAX_UPDATE_SIZE,
    ROLES,
    RoleKeys,
    TrustUpdate,
    open_trust_update,
    sign_trust_update,
)
from sfupdate.formats.sfui.cose import Signer
from sfupdate.keys import Unlock

_path = click.Path(path_type=Path, dir_okay=False)
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)


def _role_options(f: click.decorators.FC) -> click.decorators.FC:
    for role in reversed(ROLES):
        f = click.option(f"--{role}-threshold", type=click.IntRange(1, MAX_ROLE_KEYS),
                         metavar="K", help=f"How many {role} anchors must sign (default 1).")(f)
        f = click.option(f"--{role}", f"{role}_keys", type=_existing, multiple=True,
                         metavar="PUB", help=f"A {role} anchor after the update (repeat it for "
                                             f"each; naming none leaves the {role} role as it "
                                             "is).")(f)
    return f


def _roles(given: dict[str, tuple[tuple[Path, ...], int | None]]) -> tuple[RoleKeys, ...]:
    roles = []
    for role, (files, threshold) in given.items():
        if not files:
            if threshold is not None:
                raise UsageError(f"--{role}-threshold needs the {role} anchors (--{role} PUB)")
            continue
        spki = tuple(keys.load_public_key(path).public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            for path in files)
        roles.append(RoleKeys(role, threshold or 1, spki))
    if not roles:
        raise UsageError("name the new anchors of at least one role: --firmware, --operator "
                         "or --recovery PUB")
    return tuple(roles)


def _signers(key_refs: tuple[str, ...], how: Unlock) -> Sequence[Signer]:
    signers = [keys.load_signer(ref, unlock=how) for ref in key_refs]
    if len({s.kid for s in signers}) != len(signers):
        raise UsageError("the same key is given twice: a threshold counts distinct keys")
    return signers


@click.command("trust-sign")
@click.option("--key", "key_refs", metavar=KEY_METAVAR, multiple=True, required=True,
              help="A current anchor's private key (repeat it for a threshold; more can be "
                   "added later with `sfu remote trust-cosign`): a PEM file or a pkcs11: URI.")
@unlock_options
@target_options
@click.option("--version", "version", type=click.IntRange(1, 2**64 - 1), required=True,
              help="The trust store's new version: above the device's (it refuses a replay).")
@_role_options
@click.option("-o", "--output", type=_path, required=True, help="The signed update to write.")
@json_option
def trust_sign(key_refs: tuple[str, ...], passphrase_file: Path | None,
               pkcs11_module: str | None, device_key: Path | None, vendor: str | None,
               klass: str | None, version: int, firmware_keys: tuple[Path, ...],
               firmware_threshold: int | None, operator_keys: tuple[Path, ...],
               operator_threshold: int | None, recovery_keys: tuple[Path, ...],
               recovery_threshold: int | None, output: Path, as_json: bool) -> None:
    """Make a trust update (the anchors and threshold k of each role it names; the anchors it
    omits are revoked) and sign it. A device applies it only if, for each role it changes,
    k of that role's CURRENT anchors signed (docs/keys.md)."""
    roles = _roles({"firmware": (firmware_keys, firmware_threshold),
                    "operator": (operator_keys, operator_threshold),
                    "recovery": (recovery_keys, recovery_threshold)})
    update = TrustUpdate(target_for(device_key, vendor, klass), version, roles)
    signers = _signers(key_refs, unlock(passphrase_file, pkcs11_module))
    write_output(output, sign_trust_update(update, signers))
    _report(output, update, [s.kid for s in signers], as_json)


@click.command("trust-cosign")
@click.argument("update_file", type=_existing)
@click.option("--key", "key_refs", metavar=KEY_METAVAR, multiple=True, required=True,
              help="A further anchor's private key (repeatable).")
@unlock_options
@click.option("-o", "--output", type=_path, required=True,
              help="The update with the added signatures (may be UPDATE_FILE itself).")
@json_option
def trust_cosign(update_file: Path, key_refs: tuple[str, ...], passphrase_file: Path | None,
                 pkcs11_module: str | None, output: Path, as_json: bool) -> None:
    """Add signatures to a signed trust update (no signature is checked here: the device
    counts the ones by its anchors)."""
    data = read_bounded(update_file, MAX_UPDATE_SIZE)
    for signer in _signers(key_refs, unlock(passphrase_file, pkcs11_module)):
        signed, _ = open_trust_update(data)
        try:
            data = signed.add_signature(signer)
        except ValueError as exc:
            raise UsageError(f"{update_file}: {exc}") from None
    signed, update = open_trust_update(data)
    write_output(output, data)
    _report(output, update, [s.kid for s in signed.signatures], as_json)


def _report(output: Path, update: TrustUpdate, kids: list[bytes], as_json: bool) -> None:
    roles = {r.role: {"threshold": r.threshold, "anchors": len(r.keys)} for r in update.roles}
    if as_json:
        emit_json({"file": str(output), "version": update.version, "roles": roles,
                   "signer_key_ids": [kid.hex() for kid in kids]})
        return
    shown = ", ".join(f"{role} {r['threshold']} of {r['anchors']}" for role, r in roles.items())
    click.echo(f"{output}: trust update version {update.version} ({shown}), "
               f"{len(kids)} signature{'s' if len(kids) != 1 else ''}")
