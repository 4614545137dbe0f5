"""The one contract between the Rich-OS client and the SFU Agent: framing and message types.

Imports nothing of ours but `sfupdate.errors`, `formats.schema`, `formats.sfui.cbor` and
`sfupdate.progress`, so both sides of the trust boundary can share it without either
importing the other.
See docs/agent.md for the wire protocol.
"""

from sfupdate.formats.ipc.framing import MAX_CHUNK, MAX_FRAME, Connection
from sfupdate.formats.ipc.messages import AgentStatus, InstallResult, SlotReport

__all__ = ["MAX_CHUNK", "MAX_FRAME", "AgentStatus", "Connection", "InstallResult", "SlotReport"]
