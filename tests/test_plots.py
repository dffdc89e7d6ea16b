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


def test_an_out_that_is_not_a_writable_place_for_the_file_is_one_line_and_nothing_is_written(tmp_path, capsys) -> None:
    """A spec there is not replaced with PNG bytes, a folder or an SVG name is refused, and a place that cannot be
    written is said in one line (each was a traceback or a silent overwrite)."""
    from tests.test_cli import assert_one_error_line

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: kept\n")
    for out, said in (
        (spec, r"argument --out: .*spec\.yaml: the figure is a PNG file; give a file name ending in \.png"),
        (tmp_path, r"the figure is a PNG file"),
        (tmp_path / "a.svg", r"the figure is a PNG file"),
        (spec / "a.png", r"spec\.yaml is a file, not a folder"),
        (Path("/proc/lit-d2l/a.png"), r"/proc/lit-d2l/a\.png: cannot write it|/proc is not writable"),  # root|user
    ):
        code, _, err = run_main(["plot-activations", "--out", str(out), "--names", "relu"], capsys)
        assert_one_error_line(code, err, said)
    assert spec.read_text() == "name: kept\n" and sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
    for folder, said in (
        (spec, r"argument --out: .*spec\.yaml is a file, not a folder"),
        (Path("/proc/x"), r"cannot write there|not writable"),
    ):
        config = str(Path(__file__).parent.parent / "experiments" / "linear_regression.yaml")
        code, _, err = run_main(["graph", "-c", config, "--out", str(folder)], capsys)
        assert_one_error_line(code, err, said)
