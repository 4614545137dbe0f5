"""The agent's handle on its board: the kernel, which owns every record of secure storage,
and the board's slots and agent partition, which the install writes and the checks read.

Nothing in the agent writes secure storage except through `kernel` (sfupdate.secure.kernel).
"""

from __future__ import annotations

from sfupdate.secure.board.hal import Board
from sfupdate.secure.kernel import Kernel


class Device:
    def __init__(self, board: Board) -> None:
        self.board = board
        self.kernel = Kernel(board.storage)
