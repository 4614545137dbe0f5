"""The SFD2 patch format and its decoder (docs/design.md, "Compressed and delta payloads").

    patch   = "SFD2" block* end
    block   = out:uvarint(1..BLOCK) n:uvarint(0..MAX_RECORDS) ctrl diff extra
    ctrl, diff, extra = section
    section = codec:u8 length:uvarint bytes        (codec 0: stored, 1: zstd, 2: LZMA2 raw)
    end     = 0:uvarint

Each section is stored or compressed on its own and decodes to a size known before it is
decoded: ctrl to 24 n bytes, diff to the sum of the records' x, extra to the sum of their y.
ctrl holds the n records as three columns x, y and w of unsigned 64-bit numbers, each column
as eight byte planes (plane k: byte k, little-endian, of every number of the column, so the
high bytes of small numbers become runs of zeros); w is the zigzag code of z - y', where y' is
the previous record's y in the block (0 for the first). A record moves the base cursor by z,
adds x bytes of diff to the x bytes of the base at the cursor (bytewise, mod 256, as bsdiff
does) and moves the cursor past them, then appends y literal bytes of extra. The records of a
block produce exactly its `out` bytes.

Every number is bounded before it is used: a block produces at most BLOCK bytes from sections
of at most BLOCK + SECTION_SLACK bytes each; a record whose cursor leaves the base, a record
making no progress, a section decoding to more than its records need and a patch producing
more than the declared size are refused. The decoder reads the patch once, in order, and the
base at random, in windows of at most WINDOW bytes (one read per window, not per record).
While a block is assembled, the next one's sections are decompressed on a second thread
(zstd and lzma release the GIL), a large block's diff on a helper thread beside its extra, so
at most three blocks are held whatever the image size.
"""

from __future__ import annotations

import array
import bisect
import itertools
import lzma
import operator
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

import zstandard

from sfupdate.errors import PatchError, PayloadTooLongError, PayloadTooShortError

MAGIC: Final = b"SFD2"
CODEC_STORED: Final = 0
CODEC_ZSTD: Final = 1
CODEC_LZMA: Final = 2
BLOCK: Final = 4 << 20
#: Records per block, and their encoded size: what a block's ctrl section may hold.
MAX_RECORDS: Final = 1 << 15
RECORD: Final = 3 * 8
#: The base is read in windows of at most this many bytes (a record longer reads alone).
WINDOW: Final = 1 << 20
#: Compressed sections may exceed their content (incompressible literals) by this much.
SECTION_SLACK: Final = 1 << 16
#: LZMA2 dictionary: a section is at most BLOCK bytes, so a bigger one would never be used.
LZMA_FILTERS: Final = ({"id": lzma.FILTER_LZMA2, "dict_size": BLOCK},)
#: LZMA2 sections are decompressed this many bytes at a time (into their one buffer): with
#: a block's diff and extra decompressed at once, 1 MiB steps took the python3.11 apply's
#: peak RSS to 64 MiB (docs/benchmarks.md).
_LZMA_STEP: Final = 1 << 18
_VARINT_BYTES: Final = 10
_ZIGZAG_LOW: Final = b"\x01" + bytes(7)
_ZIGZAG_HIGH: Final = b"\xff" * 7 + b"\x7f"


class BaseImage(Protocol):
    """The image a delta applies to, read at random (a slot, a file)."""

    @property
    def size(self) -> int:
        ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly `length` bytes at `offset` (the caller keeps inside `size`)."""
        ...


class _Input:
    """The patch's chunks read as exact-length pieces; at most one piece is held."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._pos = 0

    def read(self, n: int) -> bytes:
        while len(self._buffer) - self._pos < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise PatchError("the patch ends in the middle of a block")
            self._buffer = self._buffer[self._pos:] + chunk
            self._pos = 0
        data = self._buffer[self._pos:self._pos + n]
        self._pos += n
        return data

    def uvarint(self, what: str) -> int:
        value = shift = 0
        for _ in range(_VARINT_BYTES):
            byte = self.read(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise PatchError(f"the patch's {what} is not a valid number")

    def at_end(self) -> bool:
        if self._pos < len(self._buffer):
            return False
        for chunk in self._chunks:
            if chunk:
                self._buffer, self._pos = chunk, 0
                return False
        return True


def _unplane(ctrl: bytearray, index: int, n: int) -> bytes:
    """Column `index` of a ctrl section, its eight byte planes interleaved back into n
    little-endian 8-byte numbers (eight strided copies, no loop over numbers)."""
    column = bytearray(8 * n)
    for k in range(8):
        at = (8 * index + k) * n
        column[k::8] = ctrl[at:at + n]
    return bytes(column)


def _numbers(column: bytes, code: str) -> list[int]:
    values = array.array(code)
    assert values.itemsize == 8
    values.frombytes(column)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def _unzigzag(column: bytes, n: int) -> bytes:
    """Zigzag-coded 64-bit numbers to two's complement, all n at once in big-integer
    operations: (u >> 1) ^ -(u & 1) in every 8-byte lane (the shift's bit carried in from the
    next lane is masked off; -(u & 1) is (u & 1) times 2**64 - 1, which stays in its lane)."""
    u = int.from_bytes(column, "little")
    low = int.from_bytes(_ZIGZAG_LOW * n, "little")
    high = int.from_bytes(_ZIGZAG_HIGH * n, "little")
    return (((u >> 1) & high) ^ ((u & low) * 0xFFFF_FFFF_FFFF_FFFF)).to_bytes(8 * n, "little")


@dataclass
class _Block:
    """One block as decoded from the patch: its records and its sections' contents."""

    out: int
    xs: list[int]
    ys: list[int]
    ws: list[int]
    diff: bytearray
    extra: bytearray


@dataclass(frozen=True)
class _Section:
    """A section as read from the patch, not yet decoded."""

    codec: int
    data: bytes
    what: str


class _Sections:
    """Reads sections, and decodes each to exactly its declared size, never more. Two
    sections may be decoded at once on two threads: nothing is shared between calls."""

    @staticmethod
    def read(source: _Input, what: str) -> _Section:
        codec = source.read(1)[0]
        length = source.uvarint("section length")
        if length > BLOCK + SECTION_SLACK:
            raise PatchError(f"the patch's {what} section exceeds the block limit")
        return _Section(codec, source.read(length), what)

    @classmethod
    def decode(cls, section: _Section, size: int) -> bytearray:
        codec, data, what = section.codec, section.data, section.what
        if codec == CODEC_STORED:
            out = bytearray(data)
        elif not data:
            raise PatchError(f"the patch's {what} section is empty, {size} bytes expected")
        else:
            try:
                if codec == CODEC_ZSTD:
                    out = cls._unzstd(data, size)
                elif codec == CODEC_LZMA:
                    out = cls._unlzma(data, size, what)
                else:
                    raise PatchError(f"unknown patch codec {codec} in its {what} section")
            except (zstandard.ZstdError, lzma.LZMAError) as exc:
                raise PatchError(f"the patch's {what} section does not decompress: "
                                 f"{exc}") from None
        if len(out) != size:
            raise PatchError(f"the patch's {what} section holds {len(out)} bytes, its "
                             f"records need {size}")
        return out

    @staticmethod
    def _unzstd(data: bytes, size: int) -> bytearray:
        """At most size + 1 bytes, read into one buffer (a frame's declared content size is
        not trusted), with a decompression context of its own (a context is not thread-safe).
        """
        out = bytearray(size + 1)
        view, filled = memoryview(out), 0
        decompressor = zstandard.ZstdDecompressor(max_window_size=BLOCK * 2)
        with decompressor.stream_reader(data, read_across_frames=True) as reader:
            while filled <= size and (got := reader.readinto(view[filled:])):
                filled += got
        del view
        del out[filled:]
        return out

    @staticmethod
    def _unlzma(data: bytes, size: int, what: str) -> bytearray:
        """Exactly `size` bytes, decompressed a step at a time into one buffer."""
        decompressor = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=LZMA_FILTERS)
        out = bytearray(size)
        filled, data_left = 0, data
        while filled < size and not decompressor.eof:
            piece = decompressor.decompress(data_left, max_length=min(_LZMA_STEP,
                                                                      size - filled))
            data_left = b""
            if not piece:  # the section ends, or stalls, before its size: refused below
                break
            out[filled:filled + len(piece)] = piece
            filled += len(piece)
        del out[filled:]
        if not decompressor.eof and decompressor.decompress(b"", max_length=1):
            raise PatchError(f"the patch's {what} section holds more than the {size} bytes "
                             "its records need")
        if not decompressor.eof or decompressor.unused_data:
            raise PatchError(f"the patch's {what} section does not end where it should")
        return out


def _read_block(source: _Input, sections: _Sections, out: int) -> _Block:
    """The next block's records and sections, each checked against the others. A large diff
    section is decompressed on a helper thread while the extra section is decompressed on
    this one (both codecs release the GIL): see _Beside."""
    n = source.uvarint("record count")
    if n > MAX_RECORDS:
        raise PatchError(f"a patch block declares {n} records, more than {MAX_RECORDS}")
    ctrl = sections.decode(sections.read(source, "ctrl"), RECORD * n)
    xs = _numbers(_unplane(ctrl, 0, n), "Q")
    ys = _numbers(_unplane(ctrl, 1, n), "Q")
    ws = _numbers(_unzigzag(_unplane(ctrl, 2, n), n), "q")
    del ctrl
    adds, literals = sum(xs), sum(ys)
    if adds + literals != out:
        raise PatchError(f"a patch block declares {out} bytes but its records produce "
                         f"{adds + literals}")
    diff_section = sections.read(source, "diff")
    extra_section = sections.read(source, "extra")
    if (adds >= BESIDE and literals >= BESIDE
            and CODEC_STORED not in (diff_section.codec, extra_section.codec)):
        with _Beside(sections.decode, diff_section, adds) as diff_result:
            extra = sections.decode(extra_section, literals)
        diff = diff_result.value()
    else:
        diff = sections.decode(diff_section, adds)
        extra = sections.decode(extra_section, literals)
    return _Block(out, xs, ys, ws, diff, extra)


#: A block's diff is decompressed beside its extra section when both decode to at least this
#: many bytes (below, a thread costs more than it saves).
BESIDE: Final = 64 << 10


class _Beside:
    """One call run on a helper thread while the caller does other work in the `with`: the
    thread is always joined when the `with` is left (an error inside it included), and its
    exception is raised by value()."""

    def __init__(self, work: Callable[[_Section, int], bytearray], section: _Section,
                 size: int) -> None:
        self._result: bytearray | None = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = work(section, size)
            except BaseException as exc:  # raised in the caller by value()
                self._error = exc

        self._thread = threading.Thread(target=run, name="sfu-patch-beside", daemon=True)

    def __enter__(self) -> _Beside:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join()

    def value(self) -> bytearray:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _blocks(chunks: Iterator[bytes], size: int) -> Iterator[_Block]:
    """The patch's blocks, decoded in order; the limits on the image and the end checked."""
    source = _Input(chunks)
    if source.read(len(MAGIC)) != MAGIC:
        raise PatchError("the payload is not an SFD2 patch")
    sections = _Sections()
    produced = 0
    while out := source.uvarint("block size"):
        if out > BLOCK:
            raise PatchError(f"a patch block of {out} bytes exceeds the {BLOCK}-byte limit")
        if produced + out > size:
            raise PayloadTooLongError(f"the patch writes more than the signed image-size "
                                      f"{size}")
        yield _read_block(source, sections, out)
        produced += out
    if not source.at_end():
        raise PatchError("bytes follow the patch's end")
    if produced != size:
        raise PayloadTooShortError(f"the patch rebuilds {produced} of the {size} bytes "
                                   "signed")


class _Ahead:
    """The blocks made one ahead on a second thread: while the caller assembles a block, the
    next one is read and decompressed (one, not more: the thread waits for the caller to
    take a block before it makes the next). The thread's exceptions are raised in the
    caller; closing (or leaving the `with`) stops the thread and waits for it, so the patch
    is never read after it returns."""

    _DONE: Final = object()
    _POLL: Final = 0.05

    def __init__(self, source: Iterator[_Block]) -> None:
        self._source = source
        self._handoff: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._permit = threading.Semaphore(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sfu-patch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            while not self._permit.acquire(timeout=self._POLL):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                return
            item: object
            try:
                item = next(self._source, self._DONE)
            except BaseException as exc:  # handed to the caller, who raises it
                item = exc
            self._handoff.put(item)
            if item is self._DONE or isinstance(item, BaseException):
                return

    def __iter__(self) -> Iterator[_Block]:
        while (item := self._handoff.get()) is not self._DONE:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, _Block)
            self._permit.release()
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> _Ahead:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


#: The bytewise addition works in steps of this many bytes (its big integers stay small, and a
#: step whose diff is all zeros, common in bsdiff's diff stream, is the base bytes as they are).
ADD_STEP: Final = 16 << 10
_LOW: Final = int.from_bytes(b"\x7f" * ADD_STEP, "little")
_HIGH: Final = _LOW << 1 & ~_LOW | 1 << (8 * ADD_STEP - 1)
_ZEROS: Final = bytes(ADD_STEP)


def add_bytes(target: bytearray, diff: bytes | bytearray) -> None:
    """target = (target + diff) mod 256, byte by byte, in place, in a few big-integer
    operations per ADD_STEP bytes (no loop over bytes): the low 7 bits of each byte add
    without carrying into the next byte, and the top bit is the exclusive-or of both top bits
    and that carry."""
    n = len(target)
    for at in range(0, n, ADD_STEP):
        step = min(ADD_STEP, n - at)
        change = diff[at:at + step]
        if change == _ZEROS[:step]:
            continue
        a = int.from_bytes(target[at:at + step], "little")
        b = int.from_bytes(change, "little")
        low, high = _LOW, _HIGH
        if step < ADD_STEP:
            shift = 8 * (ADD_STEP - step)
            low, high = low >> shift, high >> shift
        target[at:at + step] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(
            step, "little")


#: A block's image is yielded in pieces of about this many bytes (whole records).
OUT_PIECE: Final = 1 << 20


def apply_patch(chunks: Iterator[bytes], base: BaseImage,
                size: int) -> Generator[bytes, None, None]:
    """Yield the image the patch read from `chunks` rebuilds from `base`, in pieces of at most
    BLOCK bytes; raise PatchError on a malformed or hostile patch, PayloadTooLongError if it
    would produce more than `size` bytes and PayloadTooShortError if it ends before.
    `chunks` is read on a second thread, never after this generator is closed."""
    cursor = 0
    with _Ahead(_blocks(chunks, size)) as blocks:
        for block in blocks:
            pieces, cursor = _assemble(block, base, cursor)
            del block
            yield from pieces


def _assemble(block: _Block, base: BaseImage, cursor: int) -> tuple[Iterator[bytes], int]:
    """One block's bytes (in pieces) and the base cursor after it: the base bytes the records
    add to, the bytewise addition over all of them at once, then the added bytes and the
    literals interleaved (every per-record step a C-level loop: map, accumulate, join)."""
    xs, ys = block.xs, block.ys
    outs = list(map(operator.add, xs, ys))
    if outs and min(outs) == 0:
        raise PatchError("a patch record makes no progress")
    starts = list(itertools.accumulate(map(operator.add, block.ws,
                                           itertools.chain((cursor,), outs))))
    if not starts:
        return iter(()), cursor
    ends = list(map(operator.add, starts, xs))
    if min(starts) < 0 or max(ends) > base.size:
        raise PatchError(f"the patch moves its base cursor outside the {base.size}-byte base "
                         "image")
    added = _base_bytes(base, starts, ends)
    add_bytes(added, block.diff)
    return _interleaved(added, block.extra, xs, ys), ends[-1]


def _interleaved(added: bytearray, extra: bytearray, xs: list[int],
                 ys: list[int]) -> Iterator[bytes]:
    """Each record's added bytes then its literals, joined about OUT_PIECE bytes at a time."""
    a_ends = list(itertools.accumulate(xs))
    e_ends = list(itertools.accumulate(ys))
    a_starts, e_starts = [0, *a_ends[:-1]], [0, *e_ends[:-1]]
    out_ends = list(map(operator.add, a_ends, e_ends))
    i, n = 0, len(xs)
    while i < n:
        j = max(i + 1, bisect.bisect_right(out_ends, a_starts[i] + e_starts[i] + OUT_PIECE, i))
        pieces = zip(map(added.__getitem__, map(slice, a_starts[i:j], a_ends[i:j])),
                     map(extra.__getitem__, map(slice, e_starts[i:j], e_ends[i:j])),
                     strict=True)
        yield b"".join(itertools.chain.from_iterable(pieces))
        i = j


def _base_bytes(base: BaseImage, starts: list[int], ends: list[int]) -> bytearray:
    """base[starts[k]:ends[k]] for every record k, concatenated in record order. The records
    are visited in base order and read in windows (one read for all the records starting
    within WINDOW bytes of the window's first one), so the memory is a window whatever the
    base size and the reads are few whatever the order of the records."""
    n = len(starts)
    order = sorted(range(n), key=starts.__getitem__)
    by_start = list(map(starts.__getitem__, order))
    by_end = list(map(ends.__getitem__, order))
    pieces: list[bytes] = []
    i = 0
    while i < n:
        low = by_start[i]
        j = bisect.bisect_left(by_start, low + WINDOW, i + 1)
        window = base.read_at(low, max(by_end[i:j]) - low)
        at = itertools.repeat(low)
        pieces += map(window.__getitem__, map(slice, map(operator.sub, by_start[i:j], at),
                                              map(operator.sub, by_end[i:j], at)))
        i = j
    if by_start == starts:  # already in record order (the sort is stable)
        return bytearray().join(pieces)
    position = [0] * n
    for rank, record in enumerate(order):  # one cheap loop: the inverse permutation
        position[record] = rank
    return bytearray().join(map(pieces.__getitem__, position))
