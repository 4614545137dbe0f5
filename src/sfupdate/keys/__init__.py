"""Signing keys: generation, PEM files (optionally encrypted), keys in PKCS#11 tokens, key
IDs, and signers."""

from sfupdate.keys.files import (
    ALGORITHMS,
    FileSigner,
    generate_private_key,
    key_id_hex,
    load_private_key,
    load_public_key,
    parse_public_pem,
    public_pem,
    write_private_key,
)
from sfupdate.keys.refs import KeySigner, load_public_half, load_signer
from sfupdate.keys.unlock import Unlock
from sfupdate.keys.uri import is_pkcs11_uri

__all__ = [
    "ALGORITHMS",
    "FileSigner",
    "KeySigner",
    "Unlock",
    "generate_private_key",
    "is_pkcs11_uri",
    "key_id_hex",
    "load_private_key",
    "load_public_half",
    "load_public_key",
    "load_signer",
    "parse_public_pem",
    "public_pem",
    "write_private_key",
]
