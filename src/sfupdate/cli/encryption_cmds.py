"""Encrypted payloads on the command line: `sfu sign`'s recipient options, how `inspect` and
`verify` describe an encrypted payload, and `sfu keys generate-kek`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sfupdate.cli.render import emit_json, json_option, write_output
from sfupdate.formats.sfui.encryption import CONTENT_BY_NAME, EncryptionInfo

if TYPE_CHECKING:  # the authors' encryption is imported by the commands that encrypt
    from sfupdate.authoring.author.encrypt import PayloadEncryption
    from sfupdate.secure.board.hal import SecureStorage

F = TypeVar("F", bound=Callable[..., Any])
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)
_path = click.Path(path_type=Path, dir_okay=False)


def encryption_options(command: F) -> F:
    """`--encrypt-for PUB`, `--encrypt-kek FILE` (both repeatable) and `--encrypt-alg`."""
    for option in reversed((
        click.option("--encrypt-for", "encrypt_for", type=_existing, multiple=True,
                     help="Encrypt the payload for this device's public encryption key "
                          "(ECDH-ES+A128KW; `sfu board encryption-key`). Repeatable."),
        click.option("--encrypt-kek", "encrypt_kek", type=_existing, multiple=True,
                     help="Encrypt the payload for holders of this pre-shared key-encryption "
                          "key (A128KW; `sfu keys generate-kek`). Repeatable."),
        click.option("--encrypt-alg", "encrypt_alg", type=click.Choice(list(CONTENT_BY_NAME)),
                     default="A128GCM", show_default=True,
                     help="Content encryption: AES-GCM (authenticated) or AES-CTR (no tag; "
                          "the signed plaintext digest is the integrity check)."),
    )):
        command = option(command)
    return command


def payload_kek_option(command: F) -> F:
    """`--payload-kek FILE` of the provisioning commands."""
    return click.option(
        "--payload-kek", "payload_kek", type=_existing,
        help="A pre-shared A128KW key-encryption key (`sfu keys generate-kek`) to keep in "
             "secure storage: the device then also decrypts payloads signed with "
             "`sfu sign --encrypt-kek` for it.")(command)


def payload_encryption(encrypt_for: tuple[Path, ...], encrypt_kek: tuple[Path, ...],
                       algorithm: str) -> PayloadEncryption | None:
    """The encryption `sfu sign` was asked for, or None for a payload in clear."""
    if not encrypt_for and not encrypt_kek:
        return None
    from sfupdate.authoring.author.encrypt import PayloadEncryption, load_kek, load_recipient_key

    return PayloadEncryption([load_recipient_key(p) for p in encrypt_for],
                             [load_kek(p) for p in encrypt_kek], CONTENT_BY_NAME[algorithm])


def describe_encryption(info: EncryptionInfo | None) -> dict[str, Any] | None:
    """An encrypted payload as `inspect --json` shows it."""
    if info is None:
        return None
    return {"algorithm": info.name,
            "recipients": [{"algorithm": r.name, "key_id": r.kid.hex() if r.kid else None}
                           for r in info.recipients]}


def encryption_lines(desc: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The human-readable rows of `describe_encryption`."""
    if desc is None:
        return []
    rows = [("encrypted", f"{desc['algorithm']}, for {len(desc['recipients'])} recipient(s)")]
    rows += [("", f"{r['algorithm']} key {r['key_id'] or '(no key ID)'}")
             for r in desc["recipients"]]
    return rows


@click.command("generate-kek")
@click.option("-o", "--output", type=_path, required=True,
              help="Key-encryption key file to create (32 hex digits, mode 0600).")
@json_option
def generate_kek(output: Path, as_json: bool) -> None:
    """Generate a pre-shared A128KW key-encryption key for `sfu sign --encrypt-kek`."""
    from sfupdate.authoring.author.encrypt import write_kek

    kid = write_kek(output).hex()
    if as_json:
        emit_json({"file": str(output), "algorithm": "A128KW", "key_id": kid})
    else:
        click.echo(f"{output}: A128KW key-encryption key {kid}")


ENCRYPTION_KEY_FILE = "device-enc.pub.pem"


def export_encryption_key(identity_public_path: Path, pem: bytes) -> Path:
    """Write a provisioned device's public encryption key next to its identity key."""
    path = identity_public_path.with_name(ENCRYPTION_KEY_FILE)
    path.write_bytes(pem)
    return path


@click.command("encryption-key")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--output", type=_path,
              help="Write the public PEM here (default: stdout).")
@json_option
def encryption_key(directory: Path, output: Path | None, as_json: bool) -> None:
    """Export a provisioned board's public encryption key (for `sfu sign --encrypt-for`)."""
    from sfupdate.secure.board.sim import open_board

    show_encryption_key(open_board(directory).storage, str(directory), output, as_json)


def show_encryption_key(storage: SecureStorage, where: str, output: Path | None,
                        as_json: bool) -> None:
    """Derive the board's public encryption key from the identity key in its secure storage
    (the private key stays in this process) and print or write it."""
    from sfupdate.formats.sfui import key_id
    from sfupdate.keys.files import parse_public_pem
    from sfupdate.secure.kernel import Kernel
    from sfupdate.secure.kernel.agreement import agreement_public_pem

    pem = agreement_public_pem(Kernel(storage).identity_key())
    kid = key_id(parse_public_pem(pem, where).public_key).hex()
    if output is not None:
        write_output(output, pem)
    if as_json:
        emit_json({"file": str(output) if output else None, "algorithm": "ECDH-ES+A128KW",
                   "key_id": kid, "pem": pem.decode()})
    elif output is None:
        click.echo(pem.decode(), nl=False)
    else:
        click.echo(f"{output}: encryption key {kid} of {where}")
