"""An integrity policy's slot range names the component it watches on a board of several: the
agent measures that component's slot, a tampered second component is found (it was invisible
when every range meant the first component), and a component the board lacks is absent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sfupdate.authoring.operator.policy_spec import policy_from_json
from sfupdate.formats.remote import IntegrityPolicy, Region, Target
from sfupdate.secure.agent.measure import ABSENT, MISMATCH, OK, measure_region
from sfupdate.secure.board.hal import Slot
from tests.components.conftest import CopyBoard, app_image, boot_image
from tests.world import CLASS, VENDOR, fresh


def region(data: bytes, component: str | None) -> Region:
    return Region("head", hashlib.sha256(data[:256]).digest(), slot="running", offset=0,
                  length=256, component=component)


def test_a_range_of_the_second_component_is_measured_in_that_components_slot(
        set_board: CopyBoard) -> None:
    board = fresh(set_board())
    app = measure_region(board, Slot.A, region(app_image(1), "app"))
    assert app.result == OK and "component app slot A bytes 0..256" in app.detail
    assert measure_region(board, Slot.A, region(boot_image(1), None)).result == OK  # the first
    assert measure_region(board, Slot.A, region(boot_image(1), "boot")).result == OK


def test_a_tampered_second_component_is_found(set_board: CopyBoard) -> None:
    path = set_board()
    with open(path / "slots" / "app" / "A.img", "r+b") as f:
        f.seek(10)
        f.write(b"!")
    found = measure_region(fresh(path), Slot.A, region(app_image(1), "app"))
    assert found.result == MISMATCH


def test_a_component_the_board_does_not_have_is_absent(set_board: CopyBoard) -> None:
    found = measure_region(fresh(set_board()), Slot.A, region(app_image(1), "kernel"))
    assert (found.result, found.detail) == (ABSENT, "region head: this board has no component "
                                                    "kernel")


def test_the_operators_json_names_the_component(tmp_path: Path) -> None:
    spec = tmp_path / "policy.json"
    spec.write_text(json.dumps({"regions": [
        {"name": "app-head", "slot": "running", "offset": 0, "length": 256, "component": "app",
         "sha256": hashlib.sha256(app_image(1)[:256]).hexdigest()}]}))
    policy = policy_from_json(spec, Target(vendor_id=VENDOR, class_id=CLASS), 1)
    assert IntegrityPolicy.decode(policy.encode()).regions[0].component == "app"
