"""File names in the command's output are shown as they are, never as markup."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, child_env, jpeg_bytes


def test_ingest_prints_names_that_look_like_markup_literally(data_dir, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "[red]plan.jpg").write_bytes(jpeg_bytes(60))
    (folder / "[bold]notes.jpg").write_text("not a photo")

    result = subprocess.run(
        [sys.executable, "-m", "image_tagger.cli", "ingest", str(folder)],
        env=child_env(data_dir, COLUMNS="200"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert "rejected [bold]notes.jpg: not an image" in result.stdout
    assert "│ [red]plan.jpg" in result.stdout
