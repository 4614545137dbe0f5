"""The device configuration: one TOML file, `/etc/sfupdate/device.toml` (docs/deploy.md).

    [device]
    state_dir = "/var/lib/sfupdate"           # storage files, agent bundle, TPM auth, locks
    socket = "/run/sfupdate/agent.sock"
    cmdline = "/proc/cmdline"                 # where the bootloader's sfu.slot=X is read

    [slots]                                   # path, PARTLABEL=... or PARTUUID=...
    A = "PARTLABEL=rootfs-a"
    B = "PARTLABEL=rootfs-b"

    # or, for a device updated as a set of components (one SFUI installs and boots them
    # together; docs/deploy.md), one table per component instead of [slots], in order:
    # [components.boot]
    # A = "PARTLABEL=boot-a"
    # B = "PARTLABEL=boot-b"
    # [components.rootfs]
    # A = "PARTLABEL=rootfs-a"
    # B = "PARTLABEL=rootfs-b"

    [bootloader]
    type = "u-boot"                           # or "grub", or "none"
    env_config = "/etc/fw_env.config"         # u-boot: libubootenv's config
    env_defaults = "/etc/u-boot-initial-env"  # u-boot, optional
    grubenv = "/boot/efi/EFI/sfu/grubenv"     # grub

    [tpm]                                     # absent: no TPM (see --insecure-storage)
    tcti = "device:/dev/tpmrm0"
    auth_file = "/var/lib/sfupdate/tpm-auth"  # default: state_dir/tpm-auth

    [health]
    command = ["/usr/bin/systemctl", "is-system-running", "--wait"]

    [client]                                  # the client's (richos/client/config.py)
    repository = "https://updates.example.com/"

The `[client]` table belongs to the client (Rich OS, unprivileged: `sfu client --config`),
which reads the file too; the agent ignores that table and trusts nothing in it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sfupdate.errors import UsageError
from sfupdate.formats.sfui.components import COMPONENT_NAME, MAX_COMPONENTS
from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.linux.fuses import TpmLayout
from sfupdate.secure.board.sim import DEFAULT_COMPONENT

DEFAULT_PATH: Final = Path("/etc/sfupdate/device.toml")
BOOTLOADERS: Final = ("u-boot", "grub", "none")


@dataclass(frozen=True)
class TpmConfig:
    tcti: str
    auth_file: Path
    layout: TpmLayout = field(default_factory=TpmLayout)


@dataclass(frozen=True)
class DeviceConfig:
    path: Path
    state_dir: Path
    socket: Path
    cmdline: Path
    components: dict[str, dict[Slot, str]]  # name -> slot -> device spec, in order
    bootloader: str
    env_config: Path | None
    env_defaults: Path | None
    grubenv: Path | None
    tpm: TpmConfig | None
    health_command: tuple[str, ...]


_KNOWN: Final = {
    "device": {"state_dir", "socket", "cmdline"},
    "slots": {"A", "B"},
    "components": set(),  # its keys are component names, each a table like [slots]
    "bootloader": {"type", "env_config", "env_defaults", "grubenv"},
    "tpm": {"tcti", "auth_file"},
    "health": {"command"},
}


class _Table:
    """One TOML table, with errors that name the file and key."""

    def __init__(self, path: Path, name: str, data: Any, known: set[str] | None = None) -> None:
        """`known`: the keys the table may have (default: those of table `name`)."""
        if not isinstance(data, dict):
            raise UsageError(f"{path}: [{name}] must be a table")
        self.path, self.name, self.data = path, name, data
        unknown = set(data) - (_KNOWN[name] if known is None else known)
        if unknown:
            raise UsageError(f"{path}: [{name}] has unknown keys: {', '.join(sorted(unknown))}")

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        value = self.data.get(key, default)
        if value is None:
            return value
        if not isinstance(value, kind):
            raise UsageError(f"{self.path}: [{self.name}] {key} must be a {kind.__name__}")
        return value

    def need(self, key: str, kind: type) -> Any:
        value = self.get(key, kind)
        if value is None:
            raise UsageError(f"{self.path}: [{self.name}] needs {key}")
        return value

    def path_of(self, key: str, required: bool = False) -> Path | None:
        value = self.need(key, str) if required else self.get(key, str)
        if value is None:
            return None
        if not value.startswith("/"):
            raise UsageError(f"{self.path}: [{self.name}] {key} must be an absolute path")
        return Path(value)


def load_config(path: Path) -> DeviceConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such device configuration") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - set(_KNOWN) - {"client"}  # [client] is the client's to check
    if unknown:
        raise UsageError(f"{path}: unknown tables: {', '.join(sorted(unknown))}")
    device = _Table(path, "device", data.get("device", {}))
    state_dir = device.path_of("state_dir") or Path("/var/lib/sfupdate")
    socket = device.path_of("socket") or Path("/run/sfupdate/agent.sock")
    cmdline = device.path_of("cmdline") or Path("/proc/cmdline")
    boot = _Table(path, "bootloader", data.get("bootloader", {}))
    kind = boot.need("type", str)
    if kind not in BOOTLOADERS:
        raise UsageError(f"{path}: [bootloader] type must be one of {', '.join(BOOTLOADERS)}")
    tpm = None
    if "tpm" in data:
        table = _Table(path, "tpm", data["tpm"])
        tpm = TpmConfig(table.need("tcti", str),
                        table.path_of("auth_file") or state_dir / "tpm-auth")
    health = _Table(path, "health", data.get("health", {})).get("command", list, [])
    if not all(isinstance(arg, str) for arg in health):
        raise UsageError(f"{path}: [health] command must be a list of strings")
    return DeviceConfig(
        path, state_dir, socket, cmdline, _components(path, data), kind,
        boot.path_of("env_config", required=kind == "u-boot"), boot.path_of("env_defaults"),
        boot.path_of("grubenv", required=kind == "grub"), tpm, tuple(health))


def _components(path: Path, data: dict[str, Any]) -> dict[str, dict[Slot, str]]:
    """[slots] (one component, "firmware") or [components.NAME] tables, in file order."""
    if "slots" in data and "components" in data:
        raise UsageError(f"{path}: give [slots] or [components.NAME] tables, not both")
    if "components" not in data:
        slots = _Table(path, "slots", data.get("slots", {}))
        return {DEFAULT_COMPONENT: {slot: slots.need(slot.value, str) for slot in Slot}}
    tables = data["components"]
    if not isinstance(tables, dict) or not 1 <= len(tables) <= MAX_COMPONENTS:
        raise UsageError(f"{path}: [components] must hold 1 to {MAX_COMPONENTS} tables, "
                         "one per component")
    components = {}
    for name, table in tables.items():
        if not COMPONENT_NAME.fullmatch(name):
            raise UsageError(f"{path}: component name {name!r}: 1-32 of a-z, 0-9 and '-', "
                             "starting with a letter")
        slots = _Table(path, f"components.{name}", table, _KNOWN["slots"])
        components[name] = {slot: slots.need(slot.value, str) for slot in Slot}
    return components
