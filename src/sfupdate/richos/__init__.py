"""The Rich OS side: untrusted by construction (docs/architecture.md).

`client` fetches images and carries them, and signed commands, to the agent. Its compromise
can withhold updates but never make the device run an unauthentic or older image: the agent
re-verifies every byte. It imports nothing of the secure world.
"""
