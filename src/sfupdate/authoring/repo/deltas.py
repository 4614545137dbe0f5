"""Deltas beside a full image: `sfu repo add --deltas N --key KEY` signs, for a new full
image, an SFD2 delta from each of the N newest older full images of its vendor and class in
the repository, and stages them with it. The index lists each delta with the SHA-256 of its
base image (`delta_base`), so a client picks the one whose base its device runs, and falls
back to the full image otherwise (richos/client/update.py).

Deltas are SFUIs like any other: signed by the firmware key given here (the repository's own
keys sign only the index), and admitted only once they rebuild the signed image from their
base (authoring/repo/admit.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from sfupdate.authoring.author import ImageSpec
from sfupdate.authoring.author.encoded import read_base_image, sign_delta
from sfupdate.authoring.repo.repository import Entry, Repository
from sfupdate.errors import UsageError
from sfupdate.formats.sfui import EnvelopeReader, ImageInfo, Signer, Text, TrustedKey


def add_deltas(repo: Repository, full: Entry, count: int, signer: Signer,
               trust: Sequence[TrustedKey] = (), replace: bool = False) -> list[Entry]:
    """Sign and stage deltas of `full` (already added) from its `count` predecessors."""
    older = sorted((e for e in repo.full_images(full.vendor_id, full.class_id)
                    if e.sequence < full.sequence), key=lambda e: e.sequence,
                   reverse=True)[:count]
    sfui = repo.target_path(full)
    spec = _spec(sfui)
    stem, dot, suffix = full.name.rpartition(".")
    added = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.bin"
        image.write_bytes(read_base_image(sfui))
        for base in older:
            name = (f"{stem}.delta-from-{base.sequence}.{suffix}" if dot
                    else f"{full.name}.delta-from-{base.sequence}")
            out = Path(tmp) / name
            sign_delta(image, repo.target_path(base), out, signer, spec)
            added.append(repo.add(out, trust, replace))
    return added


def _spec(sfui: Path) -> ImageSpec:
    """What the full image's manifest says (it was verified when it was added)."""
    with open(sfui, "rb") as f:
        reader = EnvelopeReader(f)
        info = ImageInfo.from_manifest(reader.unverified_manifest())
        text: Text | None = reader.unverified_text()
    if info.vendor_id is None or info.class_id is None:
        raise UsageError(f"{sfui.name} names no UUID vendor or class")
    return ImageSpec(info.sequence_number, info.vendor_id, info.class_id,
                     text.component_version() if text else None,
                     text.description() if text else None)
