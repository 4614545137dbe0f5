"""Author's commands: `sfu keys`, `sfu sign`, `sfu inspect`, `sfu verify`."""

from __future__ import annotations

import os
import stat
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from sfupdate import keys
from sfupdate.cli.encryption_cmds import (
    describe_encryption,
    encryption_lines,
    encryption_options,
    payload_encryption,
)
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
from sfupdate.errors import SchemaError, ThresholdError, TruncatedError, UsageError
from sfupdate.formats.sfui import (
    ALGORITHM_NAMES,
    AlgorithmStyle,
    EnvelopeReader,
    ImageInfo,
    Manifest,
    Signer,
    Text,
    Verified,
    check_identity,
    class_uuid,
    vendor_uuid,
)
from sfupdate.formats.sfui.components import parts
from sfupdate.formats.sfui.encoding import Delta, payload_encoding
from sfupdate.formats.sfui.encryption import EncryptionInfo
from sfupdate.formats.sfui.reader import PayloadRef
from sfupdate.keys.unlock import PASSPHRASE_ENV, read_secret_file
from sfupdate.progress import Progress

if TYPE_CHECKING:
    from sfupdate.authoring.author import ImageSpec

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
@click.argument("firmware", type=_existing, required=False)
@click.option("--component", "components", metavar="NAME=FILE", multiple=True,
              help="Instead of FIRMWARE: the image of component NAME (repeatable; the first is "
                   "component 0). The SFUI installs them as one set, its sequence the set's "
                   "version; components it does not name keep their image.")
@click.option("--key", "key_refs", metavar=KEY_METAVAR, required=True, multiple=True,
              help="Private signing key: a PEM file or a pkcs11: URI. Repeat it to sign with "
                   "several keys (one COSE_Sign1 each) for a device whose firmware threshold "
                   "is above one.")
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
@click.option("--compress", type=click.Choice(["zstd"]),
              help="Compress the payload (the device decompresses it while installing).")
@click.option("--delta-from", "delta_from", type=_existing, metavar="OLD.sfui",
              help="Make the payload a delta patch against the image of OLD.sfui: only a "
                   "device running exactly that image installs it.")
@click.option("--delta-profile", type=click.Choice(["smallest", "balanced", "fast"]),
              default="balanced", show_default=True,
              help="With --delta-from: the smallest patch (LZMA2 sections), one within 1 %% "
                   "of it with fewer records (faster to apply), or one 5-15 %% larger that a "
                   "device applies up to twice as fast (zstd sections).")
@encryption_options
@unlock_options
@progress_option
@json_option
def sign(firmware: Path | None, components: tuple[str, ...], key_refs: tuple[str, ...],
         sequence: int, vendor: str, klass: str, version_text: str | None,
         description: str | None, cose_alg: str, output: Path, force: bool,
         compress: str | None, delta_from: Path | None, delta_profile: str,
         encrypt_for: tuple[Path, ...], encrypt_kek: tuple[Path, ...], encrypt_alg: str,
         passphrase_file: Path | None, pkcs11_module: str | None, progress_mode: str,
         as_json: bool) -> None:
    """Sign FIRMWARE (or several --component NAME=FILE) into a Secured Firmware Update Image
    (SUIT envelope).

    With --encrypt-for or --encrypt-kek the payload is encrypted for those recipients only;
    with --compress or --delta-from it is encoded for transport."""
    from sfupdate.authoring.author import ImageSpec, sign_firmware  # not for verify, inspect
    from sfupdate.authoring.author.delta import PROFILES
    from sfupdate.authoring.author.encoded import sign_compressed, sign_delta

    if (firmware is None) == (not components):
        raise UsageError("give FIRMWARE, or one --component NAME=FILE per component, not both")
    if compress and delta_from:
        raise UsageError("--compress and --delta-from exclude each other (a delta is "
                         "compressed already)")
    _refuse_overwrite(output, force)  # before the work; the final rename is atomic
    encryption = payload_encryption(encrypt_for, encrypt_kek, encrypt_alg)
    encoded = bool(compress or delta_from)
    if (encryption is not None or encoded) and components:
        raise UsageError("an encrypted, compressed or delta payload is supported for one "
                         "component only (FIRMWARE)")
    how = unlock(passphrase_file, pkcs11_module)
    signer, *cosigners = [keys.load_signer(ref, AlgorithmStyle(cose_alg), how)
                          for ref in key_refs]
    vendor_id, class_id = _uuids(vendor, klass)
    spec = ImageSpec(sequence, vendor_id, class_id, version_text, description)
    with progress(progress_mode, "signing") as report:
        if firmware is None:
            return _sign_set(_component_files(components), output, (signer, *cosigners), spec,
                             report, as_json)
        signed = (sign_delta(firmware, delta_from, output, signer, spec, report, cosigners,
                             encryption, PROFILES[delta_profile])
                  if delta_from else
                  sign_compressed(firmware, output, signer, spec, report, cosigners, encryption)
                  if compress else
                  sign_firmware(firmware, output, signer, spec, report, cosigners, encryption))
    if as_json:
        emit_json({"file": str(output), "sequence": sequence, "image_size": signed.image_size,
                   "image_digest": signed.image_digest.hex(), "file_size": signed.envelope_size,
                   "encoding": _encoding_name(compress, delta_from),
                   "signer_key_id": signer.kid.hex(),
                   "signer_key_ids": [s.kid.hex() for s in (signer, *cosigners)],
                   "encryption": describe_encryption(encryption.info) if encryption else None})
    else:
        click.echo(f"{output}: sequence {sequence}, {signed.image_size} bytes, "
                   f"sha256 {signed.image_digest.hex()}"
                   + (f"; {_encoding_name(compress, delta_from)} payload, "
                      f"{signed.envelope_size} bytes in all" if compress or delta_from else ""))


def _encoding_name(compress: str | None, delta_from: Path | None) -> str | None:
    return "delta" if delta_from else compress


def _component_files(specs: tuple[str, ...]) -> list[tuple[str, Path]]:
    files = []
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not file:
            raise UsageError(f"--component {spec!r}: give NAME=FILE")
        files.append((name, Path(file)))
    return files


def _sign_set(files: list[tuple[str, Path]], output: Path, signers: Sequence[Signer],
              spec: ImageSpec, report: Progress, as_json: bool) -> None:
    from sfupdate.authoring.author.components import sign_components

    signed = sign_components(files, output, signers[0], spec, report, signers[1:])
    images = [{"name": c.name, "image_size": c.size, "image_digest": c.digest.hex()}
              for c in signed.components]
    if as_json:
        emit_json({"file": str(output), "sequence": spec.sequence_number, "components": images,
                   "file_size": signed.envelope_size, "signer_key_id": signers[0].kid.hex(),
                   "signer_key_ids": [s.kid.hex() for s in signers]})
        return
    click.echo(f"{output}: sequence {spec.sequence_number}, {len(images)} components")
    for image in images:
        click.echo(f"  {image['name']}: {image['image_size']} bytes, "
                   f"sha256 {image['image_digest']}")


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def _describe(manifest: Manifest, text: Text | None,
              payload: PayloadRef | None) -> dict[str, Any]:
    info = ImageInfo.from_manifest(manifest)
    encoding = payload_encoding(manifest)
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
        "encoding": None if encoding is None else encoding.describe(),
        "version": text.component_version() if text else None,
        "description": text.description() if text else None,
        "encryption": describe_encryption(EncryptionInfo.decode(info.encryption_info)
                                          if info.encryption_info is not None else None),
        "images": _images(manifest),
    }


def _images(manifest: Manifest) -> list[dict[str, Any]]:
    """Each component's image, as the manifest describes it (named components only)."""
    try:
        found = parts(manifest)
    except SchemaError:
        return []
    return [{"component": p.name, "image_digest": p.digest.value.hex() if p.digest else None,
             "image_size": p.size, "uri": p.uri} for p in found]


_PER_COMPONENT = frozenset({"components", "image-digest", "image-size", "payload"})


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
        ("encoding", desc["encoding"]),
        ("version", desc["version"]),
        ("description", desc["description"]),
    ]
    several = len(desc["images"]) > 1  # then each component's own row says these
    for name, value in rows + encryption_lines(desc["encryption"]):
        if value is not None and not (several and name in _PER_COMPONENT):
            click.echo(f"{name + ':' if name else '':<14}{value}")
    if several:
        for image in desc["images"]:
            click.echo(f"{'component:':<14}{image['component']}: {image['image_size']} bytes, "
                       f"sha256:{image['image_digest']}, payload {image['uri']}")


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
        desc = _describe(manifest, reader.unverified_text(), reader.payload_ref)
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


def _check_payloads(reader: EnvelopeReader, verified: Verified, report: Progress) -> None:
    """Read every integrated payload to its end (the reader checks each against its digest)."""
    total = sum(p.size or 0 for p in parts(verified.manifest)) \
        if len(verified.manifest.common.components) > 1 \
        else verified.info.image_size or 0  # what the payload decodes to
    done = 0
    for chunk in reader.every_payload():
        done += len(chunk)
        report(done, total)


@click.command()
@click.argument("file", type=_existing)
@click.option("--key", "key_files", type=_existing, multiple=True, required=True,
              help="Trusted public key (repeatable).")
@click.option("--vendor", help="Require this vendor (name or UUID).")
@click.option("--class", "klass", help="Require this device class (name or UUID).")
@click.option("--threshold", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Require signatures by this many distinct keys of --key, as a device "
                   "with that firmware threshold does.")
@progress_option
@json_option
def verify(file: Path, key_files: tuple[Path, ...], vendor: str | None, klass: str | None,
           threshold: int, progress_mode: str, as_json: bool) -> None:
    """Check that an SFUI is authentic and complete; exit 0 only then."""
    trusted = [keys.load_public_key(path) for path in key_files]
    with _open(file) as stream:
        reader = EnvelopeReader(stream)
        verified = reader.authenticate(trusted)
        if len(verified.signers) < threshold:
            raise ThresholdError(f"{file} is signed by {len(verified.signers)} of the given "
                                 f"keys; --threshold requires {threshold}")
        info = verified.info
        if vendor is not None or klass is not None:  # the agent's check, on what is given
            vendor_id = vendor_uuid(vendor) if vendor is not None else info.vendor_id
            # a PEN vendor has no UUID to derive from: class_uuid then takes only a UUID
            class_id = class_uuid(vendor_id, klass) if klass is not None else info.class_id
            check_identity(info, vendor_id, class_id, str(file))
        is_delta = isinstance(verified.encoding, Delta)
        payload_checked = verified.payload is not None and not is_delta
        if payload_checked:
            with progress(progress_mode, "verifying") as report:
                _check_payloads(reader, verified, report)
    desc = _describe(verified.manifest, verified.text, verified.payload)
    desc.update(authentic=True, payload_checked=payload_checked,
                signer_key_id=verified.signer.kid.hex(),
                signer_key_ids=[key.kid.hex() for key in verified.signers])
    if as_json:
        emit_json(desc)
        return
    if payload_checked and verified.encryption is not None:
        click.echo(f"{file}: OK: authentic and complete (sequence {info.sequence_number}, "
                   f"{info.image_size} bytes encrypted with {verified.encryption.name}, signed "
                   f"by key {verified.signer.kid.hex()[:16]}); the plaintext digest is checked "
                   "by the device that decrypts it")
    elif payload_checked:
        size = sum(image["image_size"] or 0 for image in desc["images"]) or info.image_size
        count = len(desc["images"])
        click.echo(f"{file}: OK: authentic and complete (sequence {info.sequence_number}, "
                   + (f"{count} components, " if count > 1 else "")
                   + f"{size} bytes, signed by key {verified.signer.kid.hex()[:16]})")
    else:
        click.echo(f"{file}: OK: signed manifest authentic (sequence {info.sequence_number}, "
                   f"key {verified.signer.kid.hex()[:16]}); payload NOT checked: "
                   + ("a delta, which needs its base image" if is_delta else "not integrated"
                      + (f" (uri {info.payload_uri})" if info.payload_uri else "")))
