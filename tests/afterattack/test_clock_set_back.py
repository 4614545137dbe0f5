"""Attack: the Rich OS owns the host clock and sets it back, to get an expired command
accepted. The agent keeps a time floor in secure storage, raised to the signed issue time of
every command it accepts, and judges expiry by max(host clock, floor): once the device has
seen a command issued at T, no command that expired before T is accepted, whatever the host
clock says. (It does not defend before any signed time was seen; docs/after-attack.md.)"""

from __future__ import annotations

import time

import pytest

from sfupdate import errors
from tests.afterattack.conftest import Keys
from tests.afterattack.support import command, device_target, remote
from tests.agent.support import RunningAgent


def test_an_expired_command_stays_expired_when_the_host_clock_is_behind(
        agent: RunningAgent, anchors: Keys) -> None:
    target = device_target(agent.board)
    operator_now = int(time.time()) + 3600  # the operator's clock; the host's is an hour behind
    agent.client().remote(command(anchors.operator, target, 1, "reboot", issued=operator_now))
    assert remote(agent.board).time_floor == operator_now
    # Signed earlier, expired 10 minutes ago by the operator's clock; by the host clock it
    # would still have 50 minutes to live.
    stale = command(anchors.operator, target, 2, "reboot", expires=operator_now - 600,
                    issued=operator_now - 900)
    before = remote(agent.board)
    with pytest.raises(errors.ExpiredError, match="never below the time floor"):
        agent.client().remote(stale)
    assert remote(agent.board) == before  # refused before anything was spent


def test_the_time_floor_never_goes_down(agent: RunningAgent, anchors: Keys) -> None:
    target = device_target(agent.board)
    now = int(time.time())
    agent.client().remote(command(anchors.operator, target, 1, "reboot", issued=now + 100))
    agent.client().remote(command(anchors.operator, target, 2, "reboot", issued=now - 100))
    assert remote(agent.board).time_floor == now + 100
