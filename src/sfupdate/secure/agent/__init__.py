"""The SFU Agent: the only trusted party on the device (see docs/agent.md).

It alone opens the board's secure parts. It serves the IPC protocol (formats/ipc) on a Unix
socket: status, install (authenticate, policy, stream into the inactive slot, record a trial),
confirm and reject-trial.
"""
