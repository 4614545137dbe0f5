"""Signing keys: generation, PEM files, key IDs, and signers."""

from sfupdate.keys.files import (
    ALGORITHMS,
    FileSigner,
    generate_private_key,
    key_id_hex,
    load_public_key,
    load_signer,
    parse_public_pem,
    public_pem,
    write_private_key,
)

__all__ = [
    "ALGORITHMS",
    "FileSigner",
    "generate_private_key",
    "key_id_hex",
    "load_public_key",
    "load_signer",
    "parse_public_pem",
    "public_pem",
    "write_private_key",
]
