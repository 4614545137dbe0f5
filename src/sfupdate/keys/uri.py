"""PKCS#11 URIs (RFC 7512) naming a key in a token: `pkcs11:token=T;object=L?pin-source=...`.

Supported path attributes: token, serial (which token), object, id (which key; one at least)
and type (private or public: both halves are looked up anyway). Query attributes:
module-path and pin-source (file:/PATH). pin-value is refused: a PIN never goes on a command
line in clear. Any other attribute is refused rather than silently ignored, so a URI never
selects a different key than the one it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, unquote_to_bytes

from sfupdate.errors import HsmError

SCHEME: Final = "pkcs11:"
_PATH_ATTRS: Final = frozenset({"token", "serial", "object", "id", "type"})
_QUERY_ATTRS: Final = frozenset({"module-path", "pin-source"})


def is_pkcs11_uri(ref: str) -> bool:
    return ref.startswith(SCHEME)


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a `pkcs11:` URI sfupdate uses."""

    text: str
    token: str | None = None
    serial: str | None = None
    object: str | None = None
    id: bytes | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @property
    def token_name(self) -> str:
        """How errors and prompts name the token."""
        if self.token:
            return self.token
        return f"serial {self.serial}" if self.serial else "(any)"

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        if not is_pkcs11_uri(text):
            raise HsmError(f"{text!r} is not a pkcs11: URI")
        path, _, query = text[len(SCHEME):].partition("?")
        attrs: dict[str, str] = {}
        raw_id: bytes | None = None
        for part, allowed, sep in ((path, _PATH_ATTRS, ";"), (query, _QUERY_ATTRS, "&")):
            for item in filter(None, part.split(sep)):
                name, eq, value = item.partition("=")
                if name == "pin-value":
                    raise HsmError(f"{text}: pin-value puts the PIN in clear; use "
                                   "pin-source=file:/PATH or SFU_PKCS11_PIN")
                if not eq or name not in allowed:
                    raise HsmError(f"{text}: unsupported attribute {name!r} (supported: "
                                   f"{', '.join(sorted(_PATH_ATTRS | _QUERY_ATTRS))})")
                if name in attrs:
                    raise HsmError(f"{text}: attribute {name!r} given twice")
                attrs[name] = value
                if name == "id":  # bytes, percent-encoded
                    raw_id = unquote_to_bytes(value)
                    continue
                try:
                    attrs[name] = unquote(value, errors="strict")
                except UnicodeDecodeError:
                    raise HsmError(f"{text}: {name} is not UTF-8") from None
        if attrs.get("type", "private") not in ("private", "public"):
            raise HsmError(f"{text}: type={attrs['type']} is not a key pair half")
        if "object" not in attrs and raw_id is None:
            raise HsmError(f"{text}: name the key with object=LABEL or id=%XX...")
        return cls(text, attrs.get("token"), attrs.get("serial"), attrs.get("object"), raw_id,
                   attrs.get("module-path"), attrs.get("pin-source"))
