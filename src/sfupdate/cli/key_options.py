"""Options of every command that uses a private key: the key reference (a PEM file or a
`pkcs11:` URI, docs/keys.md) and how to unlock it. Light: keys (and with them cryptography)
are imported when a command runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from sfupdate.keys import Unlock

F = TypeVar("F", bound=Callable[..., Any])

KEY_METAVAR = "KEY|URI"
_existing = click.Path(path_type=Path, dir_okay=False, exists=True)

passphrase_file_option = click.option(
    "--passphrase-file", type=_existing,
    help="File whose first line is the passphrase of an encrypted key (else "
         "$SFU_KEY_PASSPHRASE, else asked on a terminal).")


def unlock_options(f: F) -> F:
    """--passphrase-file and --pkcs11-module, passed as `passphrase_file`, `pkcs11_module`."""
    f = click.option("--pkcs11-module", metavar="PATH",
                     help="PKCS#11 module (.so) for pkcs11: keys (else the URI's module-path, "
                          "else $SFU_PKCS11_MODULE); the PIN comes from the URI's pin-source, "
                          "$SFU_PKCS11_PIN or a terminal.")(f)
    return passphrase_file_option(f)


def ask(question: str) -> str:
    """A secret typed on the terminal, not echoed; the question goes to stderr."""
    answer: str = click.prompt(question, hide_input=True, err=True)
    return answer


def unlock(passphrase_file: Path | None, pkcs11_module: str | None = None) -> Unlock:
    """How this command unlocks keys; it asks only when stdin is a terminal."""
    from sfupdate.keys import Unlock

    return Unlock(passphrase_file, pkcs11_module, ask if sys.stdin.isatty() else None)
