"""`LinuxBoard`: the HAL on a Linux device, from its configuration file.

state_dir holds (the agent's user owns it, mode 0700):

    store-<hex>     secure storage (TpmStorage)
    tpm-auth        the agent's TPM authorization value (32 bytes, mode 0400), unless
                    [tpm] auth_file says elsewhere
    agent/          the agent bundle and its signer key
    .lock           the storage lock;  agent.lock: the one-agent lock
    insecure/       ONLY on a board provisioned with --insecure-storage and no TPM: the sim's
                    file-based fuses and storage, which anyone with root can roll back
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

from sfupdate.errors import DeviceStateError, UsageError
from sfupdate.secure.board.flock import agent_lock
from sfupdate.secure.board.hal import Fuse, Fuses, SecureStorage
from sfupdate.secure.board.linux.bootenv import BootMirror, GrubEnv, MirroredStorage, UBootEnv
from sfupdate.secure.board.linux.config import DeviceConfig
from sfupdate.secure.board.linux.fuses import TpmFuses, read_auth
from sfupdate.secure.board.linux.slots import LinuxSlots, resolve
from sfupdate.secure.board.linux.storage import TpmStorage
from sfupdate.secure.board.linux.tpm import Tpm
from sfupdate.secure.board.power import Power
from sfupdate.secure.board.sim import SimAgentPartition, SimFuses, SimStorage

INSECURE: Final = "insecure"


class LinuxBoard:
    def __init__(self, config: DeviceConfig, power: Power | None = None,
                 insecure_storage: bool = False) -> None:
        """`insecure_storage`: allow creating file-based fuses and storage on a device with
        no TPM ([tpm] absent); only `sfu board provision --insecure-storage` passes it."""
        self.config = config
        self.power = power or Power()
        state = config.state_dir
        self._insecure_root = state / INSECURE
        self.tpm: Tpm | None = None
        self.fuses: Fuses
        if config.tpm is not None:
            self.tpm = Tpm(config.tpm.tcti)
            self.fuses = TpmFuses(self.tpm, config.tpm.layout, config.tpm.auth_file)
        elif insecure_storage or self._insecure_root.exists():
            (self._insecure_root / "hw" / "otp").mkdir(parents=True, exist_ok=True)
            (self._insecure_root / "secure").mkdir(exist_ok=True)
            self.fuses = SimFuses(self._insecure_root, self.power)
        else:
            raise DeviceStateError(f"{config.path}: no [tpm] configured: this board has no "
                                   "anchor for its secure storage (provisioning it anyway "
                                   "needs --insecure-storage; see docs/deploy.md)")
        self.components = _components(config, self.power)
        self.slots = next(iter(self.components.values()))
        self.agent = SimAgentPartition(state, self.power)
        (state / "agent").mkdir(parents=True, exist_ok=True)
        self.mirror: BootMirror | None = None
        if config.bootloader == "u-boot":
            assert config.env_config is not None  # load_config requires it
            self.mirror = BootMirror(UBootEnv(config.env_config, config.env_defaults))
        elif config.bootloader == "grub":
            assert config.grubenv is not None
            self.mirror = BootMirror(GrubEnv(config.grubenv))
        self._storage: SecureStorage | None = None

    @property
    def insecure(self) -> bool:
        return self.tpm is None

    @property
    def storage(self) -> SecureStorage:
        if self._storage is None:
            storage: SecureStorage
            if self.config.tpm is not None and self.tpm is not None:
                layout = self.config.tpm.layout
                storage = TpmStorage(self.config.state_dir, self.tpm, layout.key,
                                     layout.storage, read_auth(self.config.tpm.auth_file),
                                     self.power)
            else:
                secret = self.fuses.read(Fuse.DEVICE_SECRET)
                if secret is None:
                    raise DeviceStateError(f"{self.config.state_dir}: the board is not "
                                           "provisioned (no device secret)")
                storage = SimStorage(self._insecure_root, secret, self.power)
            self._storage = storage if self.mirror is None \
                else MirroredStorage(storage, self.mirror)
        return self._storage

    def agent_lock(self, holder: str) -> AbstractContextManager[None]:
        return agent_lock(self.config.state_dir / "agent.lock", holder,
                          str(self.config.path))

    @property
    def identity_public_path(self) -> Path:
        return self.config.state_dir / "device-id.pub.pem"


def _components(config: DeviceConfig, power: Power) -> dict[str, LinuxSlots]:
    """Each configured component's slot pair; UsageError if two slots are one device."""
    components, seen = {}, set()
    for name, specs in config.components.items():
        paths = {slot: resolve(spec) for slot, spec in specs.items()}
        for path in paths.values():
            if path in seen:
                raise UsageError(f"{config.path}: {path} is configured as two slots")
            seen.add(path)
        components[name] = LinuxSlots(paths, power)
    return components
