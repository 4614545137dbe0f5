"""A power cut at the model's events: a board whose secure storage and slots count the
events of one operation (each secure-storage write, the slot write) and cut the power during
or right after the chosen one, as model/state.pml's `cut` says: 2k-1 during event k (a
secure-storage write keeps the old state: the board's writes are atomic; a slot write is
left torn), 2k right after it. What a cut does inside the board's own write (torn files,
lost fsyncs) is tests/faults/test_chained_power_cuts.py's business; here it is atomic."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from sfupdate.secure.board.hal import Slot
from sfupdate.secure.board.power import PowerCut
from sfupdate.secure.board.sim import SimBoard, SimSlots, SimSlotWriter, SimStorage


class Cuts:
    def __init__(self, cut: int) -> None:
        self.cut = cut
        self.events = 0

    def begin(self) -> int:
        self.events += 1
        return self.events

    def during(self, event: int) -> bool:
        return self.cut == 2 * event - 1

    def after(self, event: int) -> bool:
        return self.cut == 2 * event


class CutStorage:
    def __init__(self, inner: SimStorage, cuts: Cuts) -> None:
        self._inner = inner
        self._cuts = cuts

    def write(self, changes: Mapping[str, bytes | None]) -> None:
        event = self._cuts.begin()
        if self._cuts.during(event):
            raise PowerCut(f"cut during secure-storage write {event} (nothing written)")
        self._inner.write(changes)
        if self._cuts.after(event):
            raise PowerCut(f"cut right after secure-storage write {event}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CutSlotWriter:
    def __init__(self, inner: SimSlotWriter, cuts: Cuts, event: int) -> None:
        self._inner = inner
        self._cuts = cuts
        self._event = event

    def write(self, chunk: bytes) -> None:
        self._inner.write(chunk[:len(chunk) // 2] if self._cuts.during(self._event) else chunk)
        if self._cuts.during(self._event):
            raise PowerCut(f"cut during the slot write (event {self._event})")

    def finish(self) -> None:
        self._inner.finish()
        if self._cuts.after(self._event):
            raise PowerCut(f"cut right after the slot write (event {self._event})")

    def __enter__(self) -> CutSlotWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._inner.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CutSlots:
    def __init__(self, inner: SimSlots, cuts: Cuts) -> None:
        self._inner = inner
        self._cuts = cuts

    def writer(self, slot: Slot, header: bytes) -> CutSlotWriter:
        event = self._cuts.begin()
        return CutSlotWriter(self._inner.writer(slot, header), self._cuts, event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CutBoard:
    """`board` with its storage and slots (of every component) cut at the model's events."""

    def __init__(self, board: SimBoard, cut: int) -> None:
        self._inner = board
        cuts = Cuts(cut)
        self.storage = CutStorage(board.storage, cuts)
        self.components = {name: CutSlots(slots, cuts)
                           for name, slots in board.components.items()}
        self.slots = next(iter(self.components.values()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
