"""Make SFD2 patches (the format: sfupdate.formats.delta.patch).

The matching is bsdiff's (`bsdiff4`, a suffix sort of the old image: the smallest patches on
executables, where code moves and pointers shift by constant amounts). Its three streams, the
records, the bytewise differences and the literal bytes, are cut into bounded blocks and each
block's streams are stored on their own, each with the codec among those allowed that makes it
smallest, which is what lets a device apply the patch reading it once, in flat memory. The
records are stored as byte-planed columns with the seek coded relative to the previous
literal run (docs/design.md). The author's side holds both images in memory, as bsdiff needs.
"""

from __future__ import annotations

import array
import lzma
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import bsdiff4.core  # type: ignore[import-untyped]
import zstandard

from sfupdate.formats.delta.patch import (
    BLOCK,
    CODEC_LZMA,
    CODEC_STORED,
    CODEC_ZSTD,
    LZMA_FILTERS,
    MAGIC,
    MAX_RECORDS,
)


@dataclass(frozen=True)
class Profile:
    """How a patch is made: the codecs its sections may use (each section takes the smallest
    of them, or is stored), and the shortest bsdiff match kept as a match (a shorter one
    becomes literal bytes: see _coarsened)."""

    codecs: tuple[int, ...]
    min_add: int


#: The smallest patches: LZMA2 wherever it is smaller than zstd (nearly everywhere).
SMALLEST: Final = Profile((CODEC_LZMA, CODEC_ZSTD), min_add=16)
#: The default: LZMA2 sections as SMALLEST, but matches under 24 bytes made literals: a fifth
#: fewer records on executables (the decoder's cost per record) for patches within 1 % of
#: SMALLEST's (docs/benchmarks.md).
BALANCED: Final = Profile((CODEC_LZMA, CODEC_ZSTD), min_add=24)
#: The fastest to apply: zstd sections (decompressed several times faster than LZMA2) and
#: fewer records, for patches 5-15 % larger.
FAST: Final = Profile((CODEC_ZSTD,), min_add=32)
#: The profiles by the names `sfu sign --delta-profile` takes.
PROFILES: Final = {"smallest": SMALLEST, "balanced": BALANCED, "fast": FAST}

ZSTD_LEVEL: Final = 19
LZMA_PRESET: Final = 9 | lzma.PRESET_EXTREME


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _compress(data: bytes, codec: int) -> bytes:
    if codec == CODEC_STORED:
        return data
    if codec == CODEC_ZSTD:
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    filters = [{**LZMA_FILTERS[0], "preset": LZMA_PRESET}]
    return lzma.compress(data, lzma.FORMAT_RAW, filters=filters)


def _section(data: bytes, codecs: Sequence[int]) -> bytes:
    """A section: the smallest of `data` stored and compressed with each of `codecs`."""
    codec, body = min(((codec, _compress(data, codec))
                       for codec in (CODEC_STORED, *(codecs if data else ()))),
                      key=lambda choice: len(choice[1]))
    return bytes([codec]) + _uvarint(len(body)) + body


@dataclass
class _Block:
    records: list[tuple[int, int, int]] = field(default_factory=list)
    out: int = 0
    diff: int = 0  # where this block's diff and extra bytes start in bsdiff's streams
    extra: int = 0
    diff_len: int = 0
    extra_len: int = 0


def _blocks(triples: Iterator[tuple[int, int, int]]) -> Iterator[_Block]:
    """bsdiff's records (add x, insert y, then seek z) as SFD2 records (seek z, then add x,
    insert y), cut so that no block produces more than BLOCK bytes or holds more than
    MAX_RECORDS records. A record cut in two seeks only before its first part; a bsdiff
    record that only seeks is folded into the next one's seek."""
    block = _Block()
    seek = 0
    for x, y, z in triples:
        while x or y:
            if block.out == BLOCK or len(block.records) == MAX_RECORDS:
                yield block
                block = _Block(diff=block.diff + block.diff_len,
                               extra=block.extra + block.extra_len)
            room = BLOCK - block.out
            tx = min(x, room)
            ty = min(y, room - tx) if tx == x else 0
            x, y = x - tx, y - ty
            block.records.append((tx, ty, seek))
            seek = 0
            block.out += tx + ty
            block.diff_len += tx
            block.extra_len += ty
        seek += z
    if block.records:
        yield block


def _triples(control: bytes) -> Iterator[tuple[int, int, int]]:
    decode = bsdiff4.core.decode_int64
    for i in range(0, len(control), 24):
        yield (decode(control[i:i + 8]), decode(control[i + 8:i + 16]),
               decode(control[i + 16:i + 24]))


def _coarsened(triples: Iterable[tuple[int, int, int]], diff: bytes, extra: bytes,
               new: bytes, min_add: int) -> tuple[list[tuple[int, int, int]], bytes, bytes]:
    """bsdiff's records with every match shorter than `min_add` bytes turned into literal
    bytes of the record before it (its seek moves past the bytes it no longer reads), and
    the diff and extra streams to match. Most such matches are short chance matches far from
    their neighbours: as literals they cost about what their record and seek cost, and the
    patch has a third fewer records on executables (each costs the decoder time) and reads
    the base at fewer places. Measured in docs/benchmarks.md."""
    records: list[tuple[int, int, int]] = []
    diffs: list[bytes] = []
    extras: list[bytes] = []
    at_new = at_diff = at_extra = 0
    for x, y, z in triples:
        if 0 < x < min_add:
            if records:
                px, py, pz = records[-1]
                records[-1] = (px, py + x + y, pz + x + z)
            else:
                records.append((0, x + y, x + z))
            extras.append(new[at_new:at_new + x + y])
        else:
            records.append((x, y, z))
            diffs.append(diff[at_diff:at_diff + x])
            extras.append(extra[at_extra:at_extra + y])
        at_new, at_diff, at_extra = at_new + x + y, at_diff + x, at_extra + y
    return records, b"".join(diffs), b"".join(extras)


def make_patch(old: bytes, new: bytes, profile: Profile = BALANCED) -> bytes:
    """The SFD2 patch that rebuilds `new` from `old`, made as `profile` says (one of
    PROFILES)."""
    control, bs_diff, bs_extra = bsdiff4.core.diff(old, new)
    triples, diff, extra = _coarsened(_triples(control), bs_diff, bs_extra, new,
                                      profile.min_add)
    blocks = (encode_block(block.records, diff[block.diff:block.diff + block.diff_len],
                           extra[block.extra:block.extra + block.extra_len], profile.codecs)
              for block in _blocks(iter(triples)))
    return patch_bytes(blocks)


def patch_bytes(blocks: Iterable[bytes]) -> bytes:
    """A whole patch: the magic, the encoded blocks, the end mark."""
    return b"".join([MAGIC, *blocks, _uvarint(0)])


def _zigzag(value: int) -> int:
    return ((value << 1) ^ (value >> 63)) & 0xFFFF_FFFF_FFFF_FFFF


def _planes(values: Iterable[int]) -> bytes:
    """Unsigned 64-bit numbers as the decoder reads a ctrl column: eight byte planes."""
    column = array.array("Q", values)
    if sys.byteorder != "little":
        column.byteswap()
    raw = column.tobytes()
    return b"".join(raw[k::8] for k in range(8))


def encode_block(records: Sequence[tuple[int, int, int]], diff: bytes, extra: bytes,
                 codecs: Sequence[int], out: int | None = None) -> bytes:
    """One block: its records (x, y, z: add x, insert y, after seeking z), diff and extra
    bytes. `out` (default: what the records produce) is the declared size; only a hostile
    patch makes them differ."""
    previous_y = [0, *(y for _, y, _ in records[:-1])]
    ctrl = b"".join([_planes(x for x, _, _ in records), _planes(y for _, y, _ in records),
                     _planes(_zigzag(z - before)
                             for (_, _, z), before in zip(records, previous_y, strict=True))])
    produced = sum(x + y for x, y, _ in records) if out is None else out
    return b"".join([_uvarint(produced), _uvarint(len(records)), _section(ctrl, codecs),
                     _section(diff, codecs), _section(extra, codecs)])
