"""``lit-d2l plot-activations`` writes its PNG as any new file: 0666 less the umask, not 0600."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_cli import run_main


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_png_has_the_mode_of_any_new_file(umask: int, tmp_path: Path, capsys) -> None:
    out = tmp_path / "activations.png"
    previous = os.umask(umask)
    try:
        code, printed, _ = run_main(["plot-activations", "--out", str(out), "--names", "relu"], capsys)
    finally:
        os.umask(previous)
    assert code == 0 and f"wrote {out}" in printed
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["activations.png"], "no partial file left behind"
