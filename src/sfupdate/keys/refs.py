"""Key references: what a `--key` option names, a PEM file path or a `pkcs11:` URI.

Every command that signs resolves its key here, so each of them takes both kinds, and
encrypted PEM files, alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sfupdate.formats.sfui.cose import AlgorithmStyle, PublicKey, Signer, TrustedKey
from sfupdate.keys.files import FileSigner, load_private_key, public_half
from sfupdate.keys.unlock import Unlock
from sfupdate.keys.uri import Pkcs11Uri, is_pkcs11_uri


class KeySigner(Signer, Protocol):
    """A COSE signer that also tells its public key: a key file or a key in a token."""

    @property
    def public_key(self) -> PublicKey: ...


def load_signer(ref: str | Path, style: AlgorithmStyle = AlgorithmStyle.FULLY_SPECIFIED,
                unlock: Unlock | None = None) -> KeySigner:
    """The signer a reference names: a PEM file (encrypted or not) or a `pkcs11:` URI."""
    unlock = unlock or Unlock()
    if isinstance(ref, str) and is_pkcs11_uri(ref):
        from sfupdate.keys.hsm import HsmSigner

        return HsmSigner(Pkcs11Uri.parse(ref), unlock, style)
    return FileSigner(load_private_key(Path(ref), unlock), style)


def load_public_half(ref: str | Path, unlock: Unlock | None = None) -> TrustedKey:
    """The public key of a reference: a PEM file of either half, or a key in a token."""
    if isinstance(ref, str) and is_pkcs11_uri(ref):
        from sfupdate.keys.hsm import token_public_key

        return TrustedKey(token_public_key(Pkcs11Uri.parse(ref), unlock or Unlock()))
    return public_half(Path(ref), unlock)
