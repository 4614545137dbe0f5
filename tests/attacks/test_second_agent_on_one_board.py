"""Attack: the Rich OS starts a second agent on the same board with its own socket, then runs
installs through both at once; each agent's install lock knew only its own sessions. One
agent per board: the second is refused with one line naming the holder."""

from __future__ import annotations

import subprocess
import sys

from tests.device_world import DeviceWorld


def test_a_second_agent_on_the_same_board_is_refused_naming_the_first(
        world: DeviceWorld) -> None:
    other = world.socket_dir / "second.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "sfupdate.cli.main", "agent", "serve", "--board",
         str(world.root), "--socket", str(other)],
        capture_output=True, text=True, timeout=30, check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 9, proc.stderr  # AgentBusyError
    assert len(lines) == 1 and lines[0].startswith("sfu: error: board ")
    assert f"pid {world.running.proc.pid}" in lines[0] and "agent.sock" in lines[0]
    assert not other.exists()
    assert world.client().status().running_slot == "A"  # the first one serves on


def test_the_board_is_free_again_once_its_agent_stops(world: DeviceWorld) -> None:
    world.stop_agent()
    world.start_agent()
    assert world.client().status().rollback_floor == 1
