"""The client's part of the device configuration: the `[client]` table of the same
`/etc/sfupdate/device.toml` the agent reads (docs/deploy.md).

    [device]
    socket = "/run/sfupdate/agent.sock"       # shared with the agent; the client's default too

    [client]
    repository = "https://updates.example.com/"   # http(s)://, tftp://, ftp://, file:// or a path
    trusted_root = "/etc/sfupdate/root.json"      # the repository's 1.root.json, out of band
    state_dir = "/var/lib/sfupdate-client"        # trusted index metadata between runs
    poll_interval = 3600                          # seconds: `client watch`, and the timer's period

The client reads only `[client]` and the socket of `[device]`; the rest is the agent's, and
the agent ignores `[client]`. Nothing here is trusted by the agent: a value the Rich OS
changes can at worst point the client at another repository, whose images the agent still
authenticates. Options given on the command line win over the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sfupdate.errors import UsageError

_KEYS: Final[dict[str, type | tuple[type, ...]]] = {
    "repository": str, "trusted_root": str, "state_dir": str, "poll_interval": (int, float)}


@dataclass(frozen=True)
class ClientConfig:
    """What the file says; None where it says nothing (the command's own default applies)."""

    repository: str | None = None
    trusted_root: Path | None = None
    state_dir: Path | None = None
    socket: Path | None = None
    poll_interval: float | None = None


def load_client_config(path: Path) -> ClientConfig:
    """Read the `[client]` table (and `[device] socket`) of a device configuration file;
    UsageError names the file and key of anything wrong."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    client = _table(path, data, "client")
    unknown = set(client) - set(_KEYS)
    if unknown:
        raise UsageError(f"{path}: [client] has unknown keys: {', '.join(sorted(unknown))}")
    for key, kind in _KEYS.items():
        if key in client and (not isinstance(client[key], kind)
                              or isinstance(client[key], bool)):
            raise UsageError(f"{path}: [client] {key} has the wrong type")
    interval = client.get("poll_interval")
    if interval is not None and not 0 < interval <= 86400:
        raise UsageError(f"{path}: [client] poll_interval must be between 0 and 86400 seconds")
    socket = _table(path, data, "device").get("socket")
    if socket is not None and not isinstance(socket, str):
        raise UsageError(f"{path}: [device] socket must be a string")
    return ClientConfig(
        client.get("repository"),
        _absolute(path, "trusted_root", client.get("trusted_root")),
        _absolute(path, "state_dir", client.get("state_dir")),
        _absolute(path, "socket", socket),
        None if interval is None else float(interval))


def _table(path: Path, data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [{name}] must be a table")
    return table


def _absolute(path: Path, key: str, value: str | None) -> Path | None:
    if value is None:
        return None
    if not value.startswith("/"):
        raise UsageError(f"{path}: {key} must be an absolute path")
    return Path(value)
