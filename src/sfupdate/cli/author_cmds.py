"""Author's commands: `sfu keys`, `sfu sign`, `sfu inspect`, `sfu verify`."""

from __future__ import annotations

import os
import stat
import sys
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import click

from sfupdate import keys
from sfupdate.cli.key_options import (
    KEY_METAVAR,
    ask,
    passphrase_file_option,
    unlock,
    unlock_options,
)
from sfupdate.cli.render import (
    emit_json,
    json_option,
    progress,
    progress_option,
    write_output,
)
from sfupdate.errors import TruncatedError, UsageError
from sfupdate.formats.sfui import (
    ALGORITHM_NAMES,
    AlgorithmStyle,
    EnvelopeReader,
    ImageInfo,
    Text,
    check_identity,
    class_uuid,
    vendor_uuid,
)
from sfupdate.formats.sfui.reader import PayloadRef
from sfupdate.keys.unlock import PASSPHRASE_ENV, read_secret_file

_path = click.Path(path_type=Path, dir_okay=False)
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.group("keys")
def keys_group() -> None:
    """Create signing keys and export their public halves."""


@keys_group.command("generate")
@click.option("--alg", "algorithm", type=click.Choice(list(keys.ALGORITHMS)), default="ESP256",
              show_default=True,
              help="Key type, by algorithm: ESP256 (P-256) or Ed25519; ES256 and EdDSA are "
                   "aliases. The COSE algorithm ID is chosen when signing (sfu sign --cose-alg).")
@click.option("-o", "--output", type=_path, required=True, help="Private key file to create.")
@click.option("--encrypt", is_flag=True,
              help="Encrypt the key with a passphrase (from --passphrase-file, else "
                   "$SFU_KEY_PASSPHRASE, else asked twice on a terminal).")
@passphrase_file_option
@json_option
def keys_generate(algorithm: str, output: Path, encrypt: bool,
                  passphrase_file: Path | None, as_json: bool) -> None:
    """Generate a private signing key (PEM, mode 0600)."""
    passphrase = _new_passphrase(passphrase_file) if encrypt else None
    if passphrase_file is not None and not encrypt:
        raise UsageError("--passphrase-file goes with --encrypt")
    key = keys.generate_private_key(algorithm)
    keys.write_private_key(key, output, passphrase)
    kid = keys.key_id_hex(key.public_key())
    if as_json:
        emit_json({"file": str(output), "algorithm": algorithm, "key_id": kid,
                   "encrypted": passphrase is not None})
    else:
        click.echo(f"{output}: {algorithm} key {kid}" + (" (encrypted)" if passphrase else ""))


def _new_passphrase(passphrase_file: Path | None) -> bytes:
    if passphrase_file is not None:
        return read_secret_file(passphrase_file, "passphrase")
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode()
    if not sys.stdin.isatty():
        raise UsageError(f"--encrypt needs --passphrase-file FILE or {PASSPHRASE_ENV} (no "
                         "terminal to ask on)")
    first = ask("New passphrase")
    if not first:
        raise UsageError("an empty passphrase encrypts nothing")
    if ask("Repeat the passphrase") != first:
        raise UsageError("the passphrases differ; nothing written")
    return first.encode()


@keys_group.command("public")
@click.argument("key", metavar=KEY_METAVAR)
@click.option("-o", "--output", type=_path, help="Write the public PEM here (default: stdout).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@unlock_options
def keys_public(key: str, output: Path | None, force: bool, passphrase_file: Path | None,
                pkcs11_module: str | None) -> None:
    """Print a key's public half (SubjectPublicKeyInfo PEM) and its key ID. KEY is a PEM file
    of either half or a pkcs11: URI (the key pair's public object in the token)."""
    if output is not None:
        _refuse_overwrite(output, force)
    trusted = keys.load_public_half(key, unlock(passphrase_file, pkcs11_module))
    pem = keys.public_pem(trusted.public_key)
    if output:
        write_output(output, pem)
    else:
        click.echo(pem.decode(), nl=False)
    click.echo(f"key-id: {trusted.kid.hex()}", err=output is None)


def _refuse_overwrite(output: Path, force: bool) -> None:
    if not force and os.path.lexists(output):
        raise UsageError(f"{output} exists; refusing to overwrite it (--force replaces it)")


def _uuids(vendor: str, klass: str) -> tuple[uuid.UUID, uuid.UUID]:
    vendor_id = vendor_uuid(vendor)
    return vendor_id, class_uuid(vendor_id, klass)


@click.command()
@click.argument("firmware", type=_existing)
@click.option("--key", "key_ref", metavar=KEY_METAVAR, required=True,
              help="Private signing key: a PEM file or a pkcs11: URI.")
@click.option("--sequence", type=click.IntRange(0, 2**64 - 1), required=True,
              help="Sequence number: the anti-rollback version.")
@click.option("--vendor", required=True, help="Vendor name (domain) or vendor UUID.")
@click.option("--class", "klass", required=True, help="Device class name or class UUID.")
@click.option("--version-text", help="Human-readable version, e.g. 1.2.3.")
@click.option("--description", help="Human-readable description of the update.")
@click.option("--cose-alg", "cose_alg", type=click.Choice([s.value for s in AlgorithmStyle]),
              default=AlgorithmStyle.FULLY_SPECIFIED.value, show_default=True,
              help="COSE algorithm IDs: fully-specified ESP256 (-9) / Ed25519 (-19), as RFC 9864 "
                   "and the SUIT MTI profiles name them, or the deprecated polymorphic "
                   "ES256 (-7) / EdDSA (-8) for recipients that know only those.")
@click.option("-o", "--output", type=_path, required=True, help="The SFUI file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@unlock_options
@progress_option
@json_option
def sign(firmware: Path, key_ref: str, sequence: int, vendor: str, klass: str,
         version_text: str | None, description: str | None, cose_alg: str,
         output: Path, force: bool, passphrase_file: Path | None,
         pkcs11_module: str | None, progress_mode: str, as_json: bool) -> None:
    """Sign FIRMWARE into a Secured Firmware Update Image (SUIT envelope)."""
    from sfupdate.authoring.author import ImageSpec, sign_firmware  # not for verify, inspect

    _refuse_overwrite(output, force)  # before the work; the final rename is atomic
    signer = keys.load_signer(key_ref, AlgorithmStyle(cose_alg),
                              unlock(passphrase_file, pkcs11_module))
    vendor_id, class_id = _uuids(vendor, klass)
    spec = ImageSpec(sequence, vendor_id, class_id, version_text, description)
    with progress(progress_mode, "signing") as report:
        signed = sign_firmware(firmware, output, signer, spec, report)
    if as_json:
        emit_json({"file": str(output), "sequence": sequence, "image_size": signed.image_size,
                   "image_digest": signed.image_digest.hex(), "file_size": signed.envelope_size,
                   "signer_key_id": signer.kid.hex()})
    else:
        click.echo(f"{output}: sequence {sequence}, {signed.image_size} bytes, "
                   f"sha256 {signed.image_digest.hex()}")


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def _describe(info: ImageInfo, text: Text | None, payload: PayloadRef | None) -> dict[str, Any]:
    return {
        "sequence": info.sequence_number,
        "components": [[part.hex() for part in c] for c in info.components],
        "vendor_id": (str(info.vendor_id) if info.vendor_id
                      else str(info.vendor_pen) if info.vendor_pen else None),
        "class_id": str(info.class_id) if info.class_id else None,
        "image_digest": info.image_digest.value.hex() if info.image_digest else None,
        "image_size": info.image_size,
        "payload": ({"integrated": True, "key": payload.key, "length": payload.length}
                    if payload else {"integrated": False, "uri": info.payload_uri}),
        "version": text.component_version() if text else None,
        "description": text.description() if text else None,
    }


def _print_description(desc: dict[str, Any]) -> None:
    payload = desc["payload"]
    rows = [
        ("sequence", desc["sequence"]),
        ("components", ", ".join("/".join(c) or "[]" for c in desc["components"])),
        ("vendor-id", desc["vendor_id"]),
        ("class-id", desc["class_id"]),
        ("image-digest", desc["image_digest"] and f"sha256:{desc['image_digest']}"),
        ("image-size", desc["image_size"]),
        ("payload", f"integrated '{payload['key']}', {payload['length']} bytes"
         if payload["integrated"] else f"not integrated (uri {payload['uri']})"),
        ("version", desc["version"]),
        ("description", desc["description"]),
    ]
    for name, value in rows:
        if value is not None:
            click.echo(f"{name + ':':<14}{value}")


def _check_complete(file: Path, stream: BinaryIO, payload: PayloadRef | None) -> None:
    """Refuse a regular file that ends before its integrated payload does; the bytes are not
    read (inspect stays instant on a large image): the file size says it."""
    info = os.fstat(stream.fileno())
    if payload is None or not stat.S_ISREG(info.st_mode):
        return
    held = info.st_size - stream.tell()
    if held < payload.length:
        raise TruncatedError(f"{file} is truncated: its payload is declared as "
                             f"{payload.length} bytes, the file holds {held} of them")


@click.command()
@click.argument("file", type=_existing)
@json_option
def inspect(file: Path, as_json: bool) -> None:
    """Show what an SFUI says, WITHOUT checking its signature.

    Exit 3 if the file is not a well-formed SFUI or is truncated (shorter than its envelope
    declares)."""
    with _open(file) as stream:
        reader = EnvelopeReader(stream)
        _check_complete(file, stream, reader.payload_ref)
        manifest = reader.unverified_manifest()
        info = ImageInfo.from_manifest(manifest)
        desc = _describe(info, reader.unverified_text(), reader.payload_ref)
        signatures = [{"algorithm": ALGORITHM_NAMES.get(s.algorithm, str(s.algorithm)),
                       "key_id": s.kid.hex() if s.kid else None} for s in reader.signatures()]
    desc.update(signature_checked=False, signatures=signatures, file=str(file),
                file_size=file.stat().st_size)
    if as_json:
        emit_json(desc)
        return
    click.echo(f"{'file:':<14}{file} ({desc['file_size']} bytes)")
    click.echo(f"{'signature:':<14}UNCHECKED (inspect reads without a key; use `sfu verify`)")
    for s in signatures:
        click.echo(f"{'':<14}{s['algorithm']} by key {s['key_id'] or '(no key ID)'}")
    _print_description(desc)


@click.command()
@click.argument("file", type=_existing)
@click.option("--key", "key_files", type=_existing, multiple=True, required=True,
              help="Trusted public key (repeatable).")
@click.option("--vendor", help="Require this vendor (name or UUID).")
@click.option("--class", "klass", help="Require this device class (name or UUID).")
@progress_option
@json_option
def verify(file: Path, key_files: tuple[Path, ...], vendor: str | None, klass: str | None,
           progress_mode: str, as_json: bool) -> None:
    """Check that an SFUI is authentic and complete; exit 0 only then."""
    trusted = [keys.load_public_key(path) for path in key_files]
    with _open(file) as stream:
        reader = EnvelopeReader(stream)
        verified = reader.authenticate(trusted)
        info = verified.info
        if vendor is not None or klass is not None:  # the agent's check, on what is given
            vendor_id = vendor_uuid(vendor) if vendor is not None else info.vendor_id
            # a PEN vendor has no UUID to derive from: class_uuid then takes only a UUID
            class_id = class_uuid(vendor_id, klass) if klass is not None else info.class_id
            check_identity(info, vendor_id, class_id, str(file))
        payload_checked = verified.payload is not None
        if payload_checked:
            with progress(progress_mode, "verifying") as report:
                total = verified.payload.length if verified.payload else 0
                done = 0
                for chunk in reader.payload():
                    done += len(chunk)
                    report(done, total)
    desc = _describe(info, verified.text, verified.payload)
    desc.update(authentic=True, payload_checked=payload_checked,
                signer_key_id=verified.signer.kid.hex())
    if as_json:
        emit_json(desc)
        return
    if payload_checked:
        click.echo(f"{file}: OK: authentic and complete (sequence {info.sequence_number}, "
                   f"{info.image_size} bytes, signed by key {verified.signer.kid.hex()[:16]})")
    else:
        click.echo(f"{file}: OK: signed manifest authentic (sequence {info.sequence_number}, "
                   f"key {verified.signer.kid.hex()[:16]}); payload NOT checked: not integrated"
                   + (f" (uri {info.payload_uri})" if info.payload_uri else ""))
