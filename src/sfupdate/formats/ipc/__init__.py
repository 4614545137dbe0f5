"""The one contract between the Rich-OS client and the SFU Agent: framing (`framing`) and
message types (`messages`); `client` is the Rich-OS side's `AgentClient`.

Imports nothing of ours but `sfupdate.errors`, `formats.schema`, `formats.sfui.cbor` and
`sfupdate.progress`, so both sides of the trust boundary can share it without either
importing the other. This package imports none of its modules: a command that needs only the
framing's constants (`sfu verify`'s options) does not pay for the message types.
See docs/agent.md for the wire protocol.
"""
