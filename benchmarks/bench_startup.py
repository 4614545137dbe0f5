"""Rows of the table (benchmarks/paths.py) for what a command costs before any work: `sfu
--version`, `sfu --help` and `sfu agent status` (one request to the running agent), against an
interpreter start. Goals in seconds (issue 15: 0.15 s, 0.15 s, 0.25 s)."""

from __future__ import annotations

from common import measure, sfu_argv, watching
from paths import Goal, Row, row

from world import World


def rows(world: World) -> list[Row]:
    out = [row(f"`sfu {arg}`", measure(sfu_argv([arg]), world.runs), world.limits("start"),
               Goal(seconds=0.15)) for arg in ("--version", "--help")]
    with watching({"agent": world.agent}, world.runs) as agent:
        status = measure(sfu_argv(["agent", "status", "--socket", world.socket]), world.runs)
    out.append(row("`sfu agent status`", status, world.limits("start"), Goal(seconds=0.25),
                   servers_cpu=agent.cpu_per_run, servers_rss=agent.rss_kib))
    return out
