"""The secure-state kernel: the one owner of everything the secure world decides on.

`SecureState` (state.py) holds the state and its legal transitions as pure functions;
`Kernel` (kernel.py) is the only code that reads and writes it in secure storage, one atomic
write per transition; verify.py re-verifies what sits on the board's storage (slots, the agent
bundle) against the facts the state recorded. The boot code, the agent and the board
commands all go through it.
"""

from sfupdate.secure.kernel.kernel import Kernel
from sfupdate.secure.kernel.state import CommandOutcome, SecureState

__all__ = ["CommandOutcome", "Kernel", "SecureState"]
