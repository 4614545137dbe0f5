"""Compressed and delta payloads in the envelope reader: the image comes out whole and hashed
against the signed digest, and every malformed or hostile encoding is refused with a precise
error, in bounded memory (issue 13)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from sfupdate.authoring.author import ImageSpec, build_manifest, sign_firmware
from sfupdate.authoring.author.delta import (
    FAST,
    SMALLEST,
    Profile,
    encode_block,
    make_patch,
    patch_bytes,
)
from sfupdate.authoring.author.encoded import read_base_image, sign_compressed, sign_delta
from sfupdate.authoring.repo.admit import MemoryImage
from sfupdate.errors import (
    DeltaBaseError,
    PatchError,
    PayloadDigestError,
    PayloadTooLongError,
    PayloadTooShortError,
    UnsupportedError,
)
from sfupdate.formats.delta.patch import (
    BESIDE,
    BLOCK,
    CODEC_LZMA,
    CODEC_ZSTD,
    MAX_RECORDS,
    WINDOW,
    _Section,
    _Sections,
    apply_patch,
)
from sfupdate.formats.sfui import EnvelopeReader, TrustedKey
from sfupdate.formats.sfui.encoding import Compressed, Delta, PayloadEncoding
from sfupdate.keys.files import FileSigner
from tests.device_world import auth_wrapper, envelope
from tests.world import CLASS, VENDOR


def old_and_new(seed: int, size: int = 200_000) -> tuple[bytes, bytes]:
    """A synthetic pair: the new image moves, edits and inserts pieces of the old one."""
    rng = random.Random(seed)
    old = bytes(rng.getrandbits(8) for _ in range(size // 4)) * 4
    new = bytearray(old[size // 3:] + old[:size // 3])
    for _ in range(50):
        at = rng.randrange(len(new))
        new[at:at] = os.urandom(rng.randrange(1, 200))
        new[rng.randrange(len(new))] ^= 0x5A
    return old, bytes(new)


def signed(signer: FileSigner, image: bytes, payload: bytes,
           encoding: PayloadEncoding | None, size: int | None = None) -> bytes:
    manifest = build_manifest(ImageSpec(2, VENDOR, CLASS), hashlib.sha256(image).digest(),
                              len(image) if size is None else size, None,
                              encoding=encoding).encode()
    return envelope(manifest, payload, signer)


def read_image(data: bytes, trusted: TrustedKey, base: bytes | None = None) -> bytes:
    reader = EnvelopeReader(io.BytesIO(data))
    reader.authenticate([trusted])
    return b"".join(reader.payload(chunk_size=4096,
                                   base=None if base is None else MemoryImage(base)))


def test_a_compressed_sfui_yields_the_image_its_digest_names(
        tmp_path: Path, es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    image = b"compressible firmware " * 20_000
    (tmp_path / "fw.bin").write_bytes(image)
    signed_image = sign_compressed(tmp_path / "fw.bin", tmp_path / "fw.sfui", es256_signer,
                                   ImageSpec(2, VENDOR, CLASS))
    data = (tmp_path / "fw.sfui").read_bytes()
    assert len(data) < len(image) // 20
    assert (signed_image.image_size, signed_image.image_digest) == (
        len(image), hashlib.sha256(image).digest())
    assert read_image(data, es256_trusted) == image


def test_a_decompression_bomb_is_refused_at_the_first_byte_past_the_signed_size(
        es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    image = bytes(100_000)
    bomb = zstandard.ZstdCompressor().compress(bytes(50_000_000))  # 50 MB from a few KB
    data = signed(es256_signer, image, bomb, Compressed())
    with pytest.raises(PayloadTooLongError, match="decompression bomb"):
        read_image(data, es256_trusted)


def test_a_corrupt_or_truncated_zstd_payload_is_refused(
        es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    image = b"firmware " * 10_000
    frame = zstandard.ZstdCompressor().compress(image)
    with pytest.raises(PatchError, match="does not decompress"):
        read_image(signed(es256_signer, image, b"\x00" * 32 + frame, Compressed()),
                   es256_trusted)
    with pytest.raises(PayloadTooShortError):
        read_image(signed(es256_signer, image, frame[:len(frame) // 2], Compressed()),
                   es256_trusted)


def test_a_compressed_payload_of_another_image_fails_the_signed_digest(
        es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    image = b"firmware " * 10_000
    other = zstandard.ZstdCompressor().compress(b"malware! " * 10_000)
    with pytest.raises(PayloadDigestError):
        read_image(signed(es256_signer, image, other, Compressed()), es256_trusted)


@pytest.mark.parametrize("profile", [SMALLEST, FAST, Profile((), 8)],
                         ids=["smallest", "fast", "stored"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_patch_rebuilds_the_new_image_from_the_old(seed: int, profile: Profile) -> None:
    old, new = old_and_new(seed)
    patch = make_patch(old, new, profile)
    if profile.codecs:
        assert len(patch) < len(new) // 5
    chunks = (patch[i:i + 1000] for i in range(0, len(patch), 1000))
    assert b"".join(apply_patch(chunks, MemoryImage(old), len(new))) == new


def test_a_patch_larger_than_a_block_rebuilds_block_by_block() -> None:
    rng = random.Random(7)
    old = rng.randbytes(BLOCK + 300_000)
    new = old[:1000] + rng.randbytes(BLOCK) + old[1000:]
    patch = make_patch(old, new, FAST)
    blocks = list(apply_patch(iter([patch]), MemoryImage(old), len(new)))
    assert len(blocks) >= 2 and max(map(len, blocks)) <= BLOCK
    assert b"".join(blocks) == new


def test_a_delta_sfui_needs_its_base_and_rebuilds_the_signed_image(
        tmp_path: Path, es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    old, new = old_and_new(4)
    (tmp_path / "old.bin").write_bytes(old)
    (tmp_path / "new.bin").write_bytes(new)
    sign_firmware(tmp_path / "old.bin", tmp_path / "old.sfui", es256_signer,
                  ImageSpec(1, VENDOR, CLASS))
    sign_delta(tmp_path / "new.bin", tmp_path / "old.sfui", tmp_path / "new.sfui",
               es256_signer, ImageSpec(2, VENDOR, CLASS))
    data = (tmp_path / "new.sfui").read_bytes()
    assert len(data) < len(new) // 5
    assert read_image(data, es256_trusted, base=old) == new
    digest = hashlib.sha256(old).hexdigest()
    with pytest.raises(DeltaBaseError, match=f"sha256:{digest}"):
        read_image(data, es256_trusted)
    with pytest.raises(DeltaBaseError, match="base image is 200000 bytes"):
        read_image(data, es256_trusted, base=old + b"x")
    with pytest.raises(PayloadDigestError):  # a base with the right size, not the right bytes
        read_image(data, es256_trusted, base=bytes(len(old)))


def test_a_delta_is_made_only_from_a_full_or_compressed_sfui(
        tmp_path: Path, es256_signer: FileSigner) -> None:
    old, new = old_and_new(5)
    (tmp_path / "old.bin").write_bytes(old)
    (tmp_path / "new.bin").write_bytes(new)
    sign_compressed(tmp_path / "old.bin", tmp_path / "old.sfui", es256_signer,
                    ImageSpec(1, VENDOR, CLASS))
    assert read_base_image(tmp_path / "old.sfui") == old
    sign_delta(tmp_path / "new.bin", tmp_path / "old.sfui", tmp_path / "new.sfui",
               es256_signer, ImageSpec(2, VENDOR, CLASS))
    with pytest.raises(Exception, match="is itself a delta"):
        read_base_image(tmp_path / "new.sfui")


def test_compression_and_delta_together_are_refused(
        es256_signer: FileSigner, es256_trusted: TrustedKey) -> None:
    image = b"firmware" * 100
    manifest = build_manifest(ImageSpec(2, VENDOR, CLASS), hashlib.sha256(image).digest(),
                              len(image), None, encoding=Compressed())
    install = manifest.install
    assert isinstance(install, tuple)
    key, value = Delta(bytes(32), 10).parameter()
    install[0].argument[key] = value
    manifest_bytes = manifest.encode()
    data = envelope(manifest_bytes, image, None, auth=auth_wrapper(manifest_bytes,
                                                                   es256_signer))
    with pytest.raises(UnsupportedError, match="either compressed or a delta"):
        EnvelopeReader(io.BytesIO(data)).authenticate([es256_trusted])


# --- hostile patches: each refused with a precise error before it can do harm ---------------

BASE = bytes(range(256)) * 64  # 16 KiB
ZSTD = (CODEC_ZSTD,)


def apply_blocks(*blocks: bytes, size: int = 1000, tail: bytes = b"") -> bytes:
    patch = patch_bytes(blocks) + tail
    return b"".join(apply_patch(iter([patch]), MemoryImage(BASE), size))


def test_an_honest_crafted_patch_applies() -> None:
    block = encode_block([(100, 0, 0), (100, 800, 50)], bytes(200), b"L" * 800, ZSTD)
    assert apply_blocks(block) == BASE[:100] + BASE[150:250] + b"L" * 800


@pytest.mark.parametrize("records", [
    [(900, 0, 0), (100, 0, len(BASE) - 950)],
    [(0, 100, 0), (900, 0, -50)],
], ids=["past-the-end", "before-the-start"])
def test_a_patch_reading_outside_the_base_is_refused(records: list[tuple[int, int, int]]
                                                     ) -> None:
    diff = bytes(sum(x for x, _, _ in records))
    extra = bytes(sum(y for _, y, _ in records))
    with pytest.raises(PatchError, match="outside the 16384-byte base image"):
        apply_blocks(encode_block(records, diff, extra, ZSTD))


def test_a_patch_writing_more_than_the_signed_size_is_refused() -> None:
    block = encode_block([(0, 600, 0)], b"", b"A" * 600, ZSTD)
    with pytest.raises(PayloadTooLongError, match="more than the signed image-size 1000"):
        apply_blocks(block, block)


def test_a_patch_ending_early_is_refused() -> None:
    with pytest.raises(PayloadTooShortError, match="600 of the 1000"):
        apply_blocks(encode_block([(0, 600, 0)], b"", b"A" * 600, ZSTD))


def test_a_record_making_no_progress_is_refused() -> None:
    block = encode_block([(0, 0, 5)] * 1000 + [(0, 1000, 0)], b"", b"A" * 1000, ZSTD)
    with pytest.raises(PatchError, match="makes no progress"):
        apply_blocks(block)


def test_a_block_over_the_limit_or_with_too_many_records_is_refused() -> None:
    with pytest.raises(PatchError, match="exceeds the"):
        apply_blocks(encode_block([(0, 1, 0)], b"", b"A", ZSTD, out=BLOCK + 1),
                     size=BLOCK + 1)
    many = [(0, 1, 0)] * (MAX_RECORDS + 1)
    with pytest.raises(PatchError, match=f"records, more than {MAX_RECORDS}"):
        apply_blocks(encode_block(many, b"", b"A" * len(many), ZSTD),
                     size=len(many))


def test_a_block_whose_records_disagree_with_its_size_is_refused() -> None:
    with pytest.raises(PatchError, match="declares 900 bytes but its records produce 1000"):
        apply_blocks(encode_block([(0, 1000, 0)], b"", b"A" * 1000, ZSTD, out=900))


@pytest.mark.parametrize("codec", [CODEC_LZMA, CODEC_ZSTD], ids=["lzma", "zstd"])
def test_a_section_expanding_past_its_declared_size_is_refused(codec: int) -> None:
    honest = encode_block([(0, 1000, 0)], b"", b"A" * 1000, (codec,))
    bomb = encode_block([(0, 1000, 0)], b"", b"A" * 50_000, (codec,))
    # the bomb's ctrl says 1000 literal bytes; its extra section holds 50 000
    with pytest.raises(PatchError, match="extra section"):
        apply_blocks(bomb)
    assert apply_blocks(honest) == b"A" * 1000


def test_a_stored_section_longer_than_its_records_need_is_refused() -> None:
    literals = (bytes(range(256)) * 4)[:1000]
    assert apply_blocks(encode_block([(0, 1000, 0)], b"", literals, ())) == literals
    longer = encode_block([(0, 1000, 0)], b"", bytes(range(256)) * 5, (), out=1000)
    with pytest.raises(PatchError, match="extra section holds 1280 bytes, its records need "
                                         "1000"):
        apply_blocks(longer)


def test_trailing_bytes_truncation_and_unknown_codecs_are_refused() -> None:
    block = encode_block([(0, 1000, 0)], b"", b"A" * 1000, ZSTD)
    with pytest.raises(PatchError, match="bytes follow the patch's end"):
        apply_blocks(block, tail=b"junk")
    patch = patch_bytes([block])
    with pytest.raises(PatchError, match="ends in the middle of a block"):
        b"".join(apply_patch(iter([patch[:len(patch) // 2]]), MemoryImage(BASE), 1000))
    stored = encode_block([(0, 1000, 0)], b"", b"A" * 1000, ())
    assert stored[3] == 0  # out (2 bytes), records (1), then the ctrl section's codec
    with pytest.raises(PatchError, match="unknown patch codec 9 in its ctrl section"):
        apply_blocks(stored[:3] + b"\x09" + stored[4:])
    with pytest.raises(PatchError, match="not an SFD2 patch"):
        b"".join(apply_patch(iter([b"BSDIFF40" + patch]), MemoryImage(BASE), 1000))


def test_a_patch_moving_its_cursor_far_outside_the_base_is_refused() -> None:
    block = encode_block([(0, 500, 2**62), (0, 500, 2**62)], b"", b"A" * 1000, ZSTD)
    with pytest.raises(PatchError, match="moves its base cursor outside"):
        apply_blocks(block)


def test_negative_seeks_and_out_of_order_reads_rebuild_the_image() -> None:
    records = [(100, 0, 5000), (100, 10, -4000), (200, 0, 9000), (50, 0, -10000)]
    diff = bytes([1]) * 450
    want, cursor = b"", 0
    for x, y, z in records:
        cursor += z
        want += bytes((b + 1) % 256 for b in BASE[cursor:cursor + x]) + b"L" * y
        cursor += x
    assert apply_blocks(encode_block(records, diff, b"L" * 10, ZSTD), size=460) == want


class CountingBase(MemoryImage):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read_at(self, offset: int, length: int) -> bytes:
        self.reads += 1
        return super().read_at(offset, length)


def test_a_block_reading_the_base_far_apart_reads_it_in_a_few_windows_not_per_record() -> None:
    """Records alternating between two places WINDOW * 3 apart: two reads, not 1000."""
    rng = random.Random(3)
    base = CountingBase(rng.randbytes(4 * WINDOW))
    far = 3 * WINDOW
    records = [(100, 0, 0)] + [(100, 0, far - 100), (100, 0, -far)] * 499 + [(100, 0, far - 100)]
    block = encode_block(records, bytes(100 * len(records)), b"", ZSTD)
    size = 100 * len(records)
    out = b"".join(apply_patch(iter([patch_bytes([block])]), base, size))
    low = base.read_at(0, 50_000)
    high = base.read_at(far, 50_000)
    expected = b"".join(low[100 * i:100 * (i + 1)] + high[100 * i:100 * (i + 1)]
                        for i in range(500))
    assert out == expected
    assert base.reads == 2 + 2


def test_a_decoder_closed_early_stops_its_reading_thread_and_reads_no_further() -> None:
    block = encode_block([(0, 1000, 0)], b"", b"A" * 1000, ZSTD)
    patch = patch_bytes([block] * 50)
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for at in range(0, len(patch), 10):
            read.append(at)
            yield patch[at:at + 10]

    out = apply_patch(chunks(), MemoryImage(BASE), 50_000)
    assert next(out) == b"A" * 1000
    out.close()
    assert not [t for t in threading.enumerate() if t.name == "sfu-patch"]
    after_close = len(read)
    assert after_close < len(patch) // 10 // 2  # it was a few blocks ahead, not at the end
    assert len(read) == after_close


def test_an_error_reading_the_patch_reaches_the_consumer() -> None:
    block = encode_block([(0, 1000, 0)], b"", b"A" * 1000, ZSTD)
    patch = patch_bytes([block] * 3)

    def chunks() -> Iterator[bytes]:
        yield patch[:len(patch) // 2]
        raise OSError("the payload's medium failed")

    with pytest.raises(OSError, match="medium failed"):
        b"".join(apply_patch(chunks(), MemoryImage(BASE), 3000))
    assert not [t for t in threading.enumerate() if t.name == "sfu-patch"]


def test_a_large_blocks_diff_is_decoded_beside_its_literals_on_a_joined_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sections of a large block decompress at once (a helper thread takes the diff);
    the helper's error reaches the consumer and the helper is joined either way."""
    decoded_on: dict[str, str] = {}
    decode = _Sections.decode

    def recording(section: _Section, size: int) -> bytearray:
        decoded_on[section.what] = threading.current_thread().name
        return decode(section, size)

    monkeypatch.setattr(_Sections, "decode", staticmethod(recording))
    rng = random.Random(11)
    base = rng.randbytes(4 * BESIDE)
    diff = bytes(rng.choice(b"\x00\x00\x00\x04") for _ in range(2 * BESIDE))
    literals = bytes(rng.choice(b"ABCD") for _ in range(BESIDE))
    records = [(2 * BESIDE, BESIDE, 0)]
    size = 3 * BESIDE
    for codec in (CODEC_LZMA, CODEC_ZSTD):
        block = encode_block(records, diff, literals, (codec,))
        out = b"".join(apply_patch(iter([patch_bytes([block])]), MemoryImage(base), size))
        added = bytes((a + b) % 256 for a, b in zip(base[:len(diff)], diff, strict=True))
        assert out == added + literals
        assert decoded_on == {"ctrl": "sfu-patch", "diff": "sfu-patch-beside",
                              "extra": "sfu-patch"}
        longer = encode_block(records, diff + b"\x01", literals, (codec,), out=size)
        with pytest.raises(PatchError, match="diff section holds"):
            b"".join(apply_patch(iter([patch_bytes([longer])]), MemoryImage(base), size))
        assert not [t for t in threading.enumerate() if t.name.startswith("sfu-patch")]
