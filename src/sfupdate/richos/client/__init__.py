"""The SFU Client (Rich OS side, untrusted): sources, verified index, download, hand-off.

It never imports the agent, the board or the boot code: it talks to the agent only through
an object with `.status()` and `.install()` (the IPC client in production).
"""

from sfupdate.richos.client.download import TransferPolicy, fetch
from sfupdate.richos.client.http import HttpSource
from sfupdate.richos.client.index import Candidate, RepositoryIndex
from sfupdate.richos.client.sources import FileSource, Source, open_source
from sfupdate.richos.client.update import (
    Agent,
    CheckResult,
    DeviceStatus,
    Installed,
    Skipped,
    UpdateResult,
    check,
    install_file,
    install_stream,
    select,
    update,
)

__all__ = [
    "Agent",
    "Candidate",
    "CheckResult",
    "DeviceStatus",
    "FileSource",
    "HttpSource",
    "Installed",
    "RepositoryIndex",
    "Skipped",
    "Source",
    "TransferPolicy",
    "UpdateResult",
    "check",
    "fetch",
    "install_file",
    "install_stream",
    "open_source",
    "select",
    "update",
]
