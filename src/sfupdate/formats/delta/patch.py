"""The SFD1 patch format and its decoder (docs/design.md, "Delta updates").

    patch  = "SFD1" codec:u8 block* end
    block  = out:uvarint(1..BLOCK) ctrl_len ctrl_clen diff_clen extra_clen   (uvarints)
             ctrl-section diff-section extra-section
    end    = 0:uvarint

Each section is compressed on its own with the patch's codec (1: zstd, 2: LZMA2 raw) and
decompresses to a known size: ctrl to `ctrl_len` = 24 n bytes, the n records' x, y and z as
three columns of little-endian signed 64-bit integers (columns compress better than rows),
diff to the sum of the records' x, extra to the sum of their y. A record moves
the base cursor by z, adds x bytes of diff to the x bytes of the base at the cursor
(bytewise, mod 256, as bsdiff does) and moves the cursor past them, then appends y literal
bytes of extra. The records of a block produce exactly its `out` bytes.

Every number is bounded before it is used: a block produces at most BLOCK bytes from
sections of at most BLOCK bytes each (a few blocks' worth of memory whatever the image size);
a record that reads outside the base, makes no progress, or a patch that produces more than
the declared size is refused with PatchError. The decoder reads the patch once, in order,
and the base at random.
"""

from __future__ import annotations

import array
import itertools
import lzma
import operator
import sys
from collections.abc import Iterable, Iterator
from typing import Final, Protocol

import zstandard

from sfupdate.errors import PatchError, PayloadTooLongError, PayloadTooShortError

MAGIC: Final = b"SFD1"
CODEC_ZSTD: Final = 1
CODEC_LZMA: Final = 2
BLOCK: Final = 4 << 20
#: Records per block, and their encoded size: what a block's ctrl section may hold.
MAX_RECORDS: Final = 1 << 15
_RECORD: Final = 3 * 8
MAX_CTRL: Final = MAX_RECORDS * _RECORD
#: A block's base reads are served from one read of their span when it is at most this.
WINDOW: Final = BLOCK + BLOCK // 2
#: Compressed sections may exceed their content (incompressible literals) by this much.
SECTION_SLACK: Final = 1 << 16
#: LZMA2 dictionary: a section is at most BLOCK bytes, so a bigger one would never be used.
LZMA_FILTERS: Final = ({"id": lzma.FILTER_LZMA2, "dict_size": BLOCK},)
_VARINT_BYTES: Final = 10


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


class _Records:
    """A block's records, decoded from the ctrl section's three columns (x, y and z, each an
    array of little-endian signed 64-bit integers): every check and every offset is computed
    by C-level loops (array, map, accumulate), none in Python bytecode per record."""

    def __init__(self, ctrl: bytes, out: int) -> None:
        if len(ctrl) % _RECORD or len(ctrl) // _RECORD > MAX_RECORDS:
            raise PatchError(f"a patch block's records are not whole or more than "
                             f"{MAX_RECORDS}")
        n = len(ctrl) // _RECORD
        columns = []
        for i in range(3):
            column = array.array("q")
            column.frombytes(ctrl[i * 8 * n:(i + 1) * 8 * n])
            if sys.byteorder != "little":
                column.byteswap()
            columns.append(column)
        self.xs, self.ys, self.zs = columns
        if n and (min(self.xs) < 0 or min(self.ys) < 0):
            raise PatchError("a patch record has a negative length")
        if n and min(map(operator.add, self.xs, self.ys)) == 0:
            raise PatchError("a patch record makes no progress")
        self.adds, self.literals = sum(self.xs), sum(self.ys)
        if self.adds + self.literals != out:
            raise PatchError(f"a patch block declares {out} bytes but its records produce "
                             f"{self.adds + self.literals}")

    def reads(self, cursor: int) -> tuple[array.array[int], int]:
        """Where each record reads the base (the cursor moved by z before each read, by x
        after it), and the cursor after the block."""
        starts = _column(itertools.accumulate(
            map(operator.add, self.zs, itertools.chain((cursor,), self.xs))))
        return starts, (starts[-1] + self.xs[-1] if starts else cursor)


def _column(values: Iterable[int]) -> array.array[int]:
    """Numbers kept compactly (8 bytes each); one past 64 bits is refused."""
    try:
        return array.array("q", values)
    except OverflowError:
        raise PatchError("a patch record moves the base cursor out of range") from None


class _Sections:
    """Decompresses one section to exactly its declared size, never more."""

    def __init__(self, codec: int) -> None:
        if codec not in (CODEC_ZSTD, CODEC_LZMA):
            raise PatchError(f"unknown patch codec {codec}")
        self._codec = codec
        self._zstd = zstandard.ZstdDecompressor(max_window_size=BLOCK * 2)

    def decode(self, data: bytes, size: int, what: str) -> bytes:
        if not data:
            if size:
                raise PatchError(f"the patch's {what} section is empty, {size} bytes expected")
            return b""
        try:
            if self._codec == CODEC_ZSTD:
                out = self._unzstd(data, size)
            else:
                out = self._unlzma(data, size, what)
        except (zstandard.ZstdError, lzma.LZMAError) as exc:
            raise PatchError(f"the patch's {what} section does not decompress: {exc}") from None
        if len(out) != size:
            raise PatchError(f"the patch's {what} section holds {len(out)} bytes, its "
                             f"records need {size}")
        return out

    def _unzstd(self, data: bytes, size: int) -> bytes:
        """At most size + 1 bytes (a frame's declared content size is not trusted)."""
        out = bytearray()
        with self._zstd.stream_reader(data, read_across_frames=True) as reader:
            while len(out) <= size and (piece := reader.read(size + 1 - len(out))):
                out += piece
        return bytes(out)

    @staticmethod
    def _unlzma(data: bytes, size: int, what: str) -> bytes:
        decompressor = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=LZMA_FILTERS)
        out = decompressor.decompress(data, max_length=size)
        if not decompressor.eof and decompressor.decompress(b"", max_length=1):
            raise PatchError(f"the patch's {what} section holds more than the {size} bytes "
                             "its records need")
        if not decompressor.eof or decompressor.unused_data:
            raise PatchError(f"the patch's {what} section does not end where it should")
        return out


#: The bytewise addition works in steps of this many bytes (its big integers stay small).
ADD_STEP: Final = 256 << 10
_LOW: Final = int.from_bytes(b"\x7f" * ADD_STEP, "little")
_HIGH: Final = _LOW << 1 & ~_LOW | 1 << (8 * ADD_STEP - 1)


def add_bytes(old: bytes, diff: bytes) -> bytearray:
    """(old + diff) mod 256, byte by byte, in a few big-integer operations per ADD_STEP bytes
    (no loop over bytes): the low 7 bits of each byte add without carrying into the next
    byte, and the top bit is the exclusive-or of both top bits and that carry."""
    n = len(old)
    out = bytearray(n)
    old_view, diff_view = memoryview(old), memoryview(diff)
    for at in range(0, n, ADD_STEP):
        step = min(ADD_STEP, n - at)
        a = int.from_bytes(old_view[at:at + step], "little")
        b = int.from_bytes(diff_view[at:at + step], "little")
        low, high = _LOW, _HIGH
        if step < ADD_STEP:
            shift = 8 * (ADD_STEP - step)
            low, high = low >> shift, high >> shift
        out[at:at + step] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(step,
                                                                                  "little")
    return out


def apply_patch(chunks: Iterator[bytes], base: BaseImage, size: int) -> Iterator[bytes]:
    """Yield the image the patch read from `chunks` rebuilds from `base`, block by block;
    raise PatchError on a malformed or hostile patch, PayloadTooLongError if it would produce
    more than `size` bytes and PayloadTooShortError if it ends before."""
    source = _Input(chunks)
    if source.read(len(MAGIC)) != MAGIC:
        raise PatchError("the payload is not an SFD1 patch")
    sections = _Sections(source.read(1)[0])
    produced, cursor = 0, 0
    while out := source.uvarint("block size"):
        if out > BLOCK:
            raise PatchError(f"a patch block of {out} bytes exceeds the {BLOCK}-byte limit")
        if produced + out > size:
            raise PayloadTooLongError(f"the patch writes more than the signed image-size "
                                      f"{size}")
        data, cursor = _next_block(source, sections, out, base, cursor)
        yield data
        produced += out
    if not source.at_end():
        raise PatchError("bytes follow the patch's end")
    if produced != size:
        raise PayloadTooShortError(f"the patch rebuilds {produced} of the {size} bytes "
                                   "signed")


def _next_block(source: _Input, sections: _Sections, out: int, base: BaseImage,
                cursor: int) -> tuple[bytes, int]:
    """The next block's bytes (its sections are dropped on return, before the caller uses
    the bytes) and the base cursor after it."""
    lengths = [source.uvarint("section length") for _ in range(4)]
    ctrl_len, compressed = lengths[0], lengths[1:]
    if ctrl_len > MAX_CTRL:
        raise PatchError(f"a patch block declares {ctrl_len // _RECORD} records, more "
                         f"than {MAX_RECORDS}")
    if any(n > BLOCK + SECTION_SLACK for n in compressed):
        raise PatchError("a patch section exceeds the block limit")
    ctrl = sections.decode(source.read(compressed[0]), ctrl_len, "ctrl")
    records = _Records(ctrl, out)
    diff = sections.decode(source.read(compressed[1]), records.adds, "diff")
    extra = sections.decode(source.read(compressed[2]), records.literals, "extra")
    return _block(records, diff, extra, base, cursor)


def _block(records: _Records, diff: bytes, extra: bytes, base: BaseImage,
           cursor: int) -> tuple[bytes, int]:
    """One block's bytes and the base cursor after it."""
    xs, ys = records.xs, records.ys
    starts, cursor = records.reads(cursor)
    if records.adds:
        reading = _column(map(operator.mul, starts, map(bool, xs)))  # 0: nothing is read
        low, high = min(reading), max(map(operator.add, reading, xs))
        if low < 0 or high > base.size:
            raise PatchError(f"the patch reads base bytes outside the {base.size}-byte base "
                             "image")
        if high - low <= WINDOW:  # one read of the span the block draws from
            window = base.read_at(low, high - low)
            offsets = _column(map(operator.sub, reading, itertools.repeat(low)))
            old = b"".join(map(window.__getitem__, map(slice, offsets,
                                                       map(operator.add, offsets, xs))))
            del window
        else:
            old = b"".join(map(base.read_at, reading, xs))
        added = add_bytes(old, diff)
        del old
    else:
        added = bytearray()
    literals = extra
    a_ends = _column(itertools.accumulate(xs))
    e_ends = _column(itertools.accumulate(ys))
    pieces = zip(map(added.__getitem__, map(slice, itertools.chain((0,), a_ends), a_ends)),
                 map(literals.__getitem__, map(slice, itertools.chain((0,), e_ends), e_ends)),
                 strict=False)
    return b"".join(itertools.chain.from_iterable(pieces)), cursor
