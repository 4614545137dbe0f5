"""Without spin (or gcc) the model tests fail in CI and skip, saying why, elsewhere."""

from __future__ import annotations

import shutil

import pytest

from tests.model import spin


@pytest.mark.parametrize("missing", ["spin", "gcc"])
def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(missing: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == missing else real(tool))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{missing} not installed.*CI must run"):
        spin.require_spin()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=f"{missing} not installed"):
        spin.require_spin()
