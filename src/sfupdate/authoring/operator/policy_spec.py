"""An integrity policy from the operator's JSON description of the regions to watch:
{"regions": [{"name", "file" | "slot", "offset", "length", "component" (with "slot"; default
the board's first), "sha256" (hex) | "sha256_of" (a reference file beside the JSON),
"on_mismatch": "report" | "revert"}]}."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final

from sfupdate.errors import UsageError
from sfupdate.formats.remote import IntegrityPolicy, Region, Target

_KEYS: Final = frozenset({"name", "file", "slot", "offset", "length", "component", "sha256",
                          "sha256_of", "on_mismatch"})
_CHUNK: Final = 1 << 20


def policy_from_json(path: Path, target: Target, sequence: int) -> IntegrityPolicy:
    """The policy `sequence` for `target` that the JSON file at `path` describes; a
    `sha256_of` names a reference file relative to the JSON file's directory."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("regions"), list):
        raise UsageError(f"{path}: expected an object with a \"regions\" list")
    regions = tuple(_region(item, path.parent) for item in spec["regions"])
    return IntegrityPolicy(target, sequence, regions)


def _region(item: Any, base: Path) -> Region:
    if not isinstance(item, dict):
        raise UsageError("each region is a JSON object")
    if set(item) - _KEYS:
        raise UsageError(f"unknown region keys: {sorted(set(item) - _KEYS)}")
    if ("sha256" in item) == ("sha256_of" in item):
        raise UsageError("give each region exactly one of sha256 and sha256_of")
    try:
        digest = _digest(item, base)
        return Region(str(item.get("name", "")), digest, str(item.get("on_mismatch", "report")),
                      path=item.get("file"), slot=item.get("slot"),
                      offset=int(item.get("offset", 0)), length=int(item.get("length", 0)),
                      component=item.get("component"))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad region {item.get('name')!r}: {exc}") from None


def _digest(item: dict[str, Any], base: Path) -> bytes:
    if "sha256" not in item:
        length = item.get("length")
        return _file_sha256(base / str(item["sha256_of"]), int(item.get("offset", 0)),
                            None if length is None else int(length))
    try:
        return bytes.fromhex(str(item["sha256"]))
    except ValueError:
        raise UsageError(f"region {item.get('name')!r}: sha256 must be hexadecimal") from None


def _file_sha256(path: Path, offset: int, length: int | None) -> bytes:
    """The SHA-256 of `length` bytes of the file from `offset` (to its end if None)."""
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as f:
            f.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                chunk = f.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
                if not chunk:
                    break
                hasher.update(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return hasher.digest()
