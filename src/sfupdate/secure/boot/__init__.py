"""Boot ROM (secure boot of the agent bundle), slot selection with trial/revert, measured boot,
and factory provisioning."""
