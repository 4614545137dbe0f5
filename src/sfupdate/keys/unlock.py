"""What unlocks a private key for one command: a passphrase for an encrypted PEM, the
PKCS#11 module and PIN for a key in a token.

Secrets never come from the command line in clear: a passphrase comes from a file
(`--passphrase-file`), the environment (`SFU_KEY_PASSPHRASE`) or a prompt on a terminal; a
PIN from the key URI's `pin-source=file:...`, the environment (`SFU_PKCS11_PIN`) or a prompt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sfupdate.errors import HsmError, KeyPassphraseError

PASSPHRASE_ENV: Final = "SFU_KEY_PASSPHRASE"
PIN_ENV: Final = "SFU_PKCS11_PIN"
MODULE_ENV: Final = "SFU_PKCS11_MODULE"
MAX_SECRET_FILE: Final = 4096

#: Asks for a secret on a terminal, given the question; None where nobody can answer.
Prompt = Callable[[str], str]


def read_secret_file(path: Path, what: str) -> bytes:
    """The first line of a secret file (a trailing newline is not part of the secret)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise KeyPassphraseError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_FILE:
        raise KeyPassphraseError(f"{path} is too large to be a {what} file")
    secret = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not secret:
        raise KeyPassphraseError(f"the {what} file {path} is empty")
    return secret


@dataclass(frozen=True)
class Unlock:
    """How a command unlocks the private keys it is given.

    `prompt` is set only when a person is at a terminal; without it a missing secret is an
    error (never a hang on a closed stdin)."""

    passphrase_file: Path | None = None
    pkcs11_module: str | None = None
    prompt: Prompt | None = None

    def passphrase(self, key: str) -> bytes:
        """The passphrase of the encrypted key `key` (named in the question and errors)."""
        if self.passphrase_file is not None:
            return read_secret_file(self.passphrase_file, "passphrase")
        if os.environ.get(PASSPHRASE_ENV):
            return os.environ[PASSPHRASE_ENV].encode()
        if self.prompt is not None:
            return self.prompt(f"Passphrase for {key}").encode()
        raise KeyPassphraseError(f"{key} is an encrypted private key: give --passphrase-file "
                                 f"FILE or set {PASSPHRASE_ENV} (no terminal to ask on)")

    def pin(self, pin_source: str | None, token: str) -> str:
        """The user PIN of `token`: the URI's pin-source, the environment, or a prompt."""
        if pin_source is not None:
            path = pin_source.removeprefix("file:")
            if not path.startswith("/"):
                raise HsmError(f"pin-source {pin_source!r}: only file:/ABSOLUTE/PATH is "
                               "supported")
            return read_secret_file(Path(path), "PIN").decode()
        if os.environ.get(PIN_ENV):
            return os.environ[PIN_ENV]
        if self.prompt is not None:
            return self.prompt(f"PIN for token {token}")
        raise HsmError(f"token {token} needs its PIN: set {PIN_ENV} or put "
                       "pin-source=file:/PATH in the key URI (no terminal to ask on)")

    def module(self, module_path: str | None) -> str:
        """The PKCS#11 module: the URI's module-path, --pkcs11-module, SFU_PKCS11_MODULE."""
        module = module_path or self.pkcs11_module or os.environ.get(MODULE_ENV)
        if not module:
            raise HsmError(f"which PKCS#11 module? give --pkcs11-module PATH, set {MODULE_ENV}, "
                           "or put module-path=PATH in the key URI")
        return module
