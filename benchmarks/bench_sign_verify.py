"""Rows `sfu sign` and `sfu verify` of the table (benchmarks/paths.py): the SFUI of the
world's firmware, signed into a new file (limit max(H, W')) and verified (limit H)."""

from __future__ import annotations

from common import measure, sfu_argv
from paths import Goal, Row, row

from world import World


def rows(world: World) -> list[Row]:
    out = world.work / "signed.sfui"
    sign = measure(world.sign_argv(out), world.runs, before=lambda: out.unlink(missing_ok=True))
    out.unlink()
    verify = measure(sfu_argv(["verify", world.sfui, "--key", world.public]), world.runs)
    return [row("`sfu verify`", verify, world.limits("H"), Goal(ratio=1.10), size=world.size),
            row("`sfu sign` (new file, fsync)", sign, world.limits("H", "W'"),
                Goal(ratio=1.15), size=world.size)]
