"""The secure world: the only trusted code on the device (docs/architecture.md).

`kernel` owns every record of secure state; `agent` serves the Rich OS through one socket
and asks the kernel for every decision; `boot` is the boot ROM, stage 2 and provisioning;
`board` is the hardware abstraction and its backends. Nothing here imports the Rich OS side,
the authors' tools, key files or the CLI (import contracts in .importlinter).
"""
