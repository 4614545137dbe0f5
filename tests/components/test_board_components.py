"""The board describes its components: `sfu board create --component NAME:SIZE ...` makes a
slot pair per component (the first in slots/, the others in slots/NAME/), a board created
without it keeps the one component "firmware" laid out as always, and bad component lists
are refused with exit 2 and nothing created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfupdate import errors
from sfupdate.cli.main import main
from sfupdate.secure.board.sim import open_board


def sfu(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_board_of_two_components_has_a_slot_pair_for_each(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = sfu(capsys, "board", "create", tmp_path / "b", "--component", "boot:64KiB",
                     "--component", "app:128KiB")
    assert code == 0
    board = open_board(tmp_path / "b")
    assert {name: slots.size for name, slots in board.components.items()} == {
        "boot": 64 * 1024, "app": 128 * 1024}
    assert (tmp_path / "b/slots/A.img").stat().st_size == 64 * 1024
    assert (tmp_path / "b/slots/app/B.img").stat().st_size == 128 * 1024
    code, out, _ = sfu(capsys, "board", "status", tmp_path / "b", "--json")
    assert json.loads(out)["components"] == [{"name": "boot", "size": 64 * 1024},
                                             {"name": "app", "size": 128 * 1024}]


def test_a_board_created_without_components_has_the_one_firmware_component(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sfu(capsys, "board", "create", tmp_path / "b", "--slot-size", "64KiB")[0] == 0
    assert "components" not in json.loads((tmp_path / "b/board.json").read_text())
    assert list(open_board(tmp_path / "b").components) == ["firmware"]


@pytest.mark.parametrize("components", [
    ["Boot:64KiB"], ["boot"], ["boot:1000"], ["boot:64KiB", "boot:64KiB"],
    [f"c{i}:4KiB" for i in range(9)],
])
def test_a_bad_component_list_is_refused(
        components: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for spec in components for a in ("--component", spec)]
    code, out, err = sfu(capsys, "board", "create", tmp_path / "b", *args)
    assert code == errors.UsageError.exit_code and out == ""
    assert err.startswith("sfu: error: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()
