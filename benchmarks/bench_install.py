"""Row `sfu install` -> agent -> slot of the table (benchmarks/paths.py): the world's SFUI
through the running agent's socket into the sim board's inactive slot, with fsync (limit
max(H, W)). Each run installs the same image again as a new trial: it stays above the floor
while nothing is confirmed. The agent's CPU time and peak RSS count with the client's."""

from __future__ import annotations

from common import measure, sfu_argv, watching
from paths import Goal, Row, row

from world import World


def rows(world: World) -> list[Row]:
    with watching({"agent": world.agent}, world.runs) as agent:
        install = measure(sfu_argv(["install", world.sfui, "--socket", world.socket]),
                          world.runs)
    return [row("`sfu install` -> agent -> slot (fsync)", install, world.limits("H", "W"),
                Goal(ratio=1.15), size=world.size, servers_cpu=agent.cpu_per_run,
                servers_rss=agent.rss_kib)]
