"""image-tagger reanalyze: a new job over images analysed by an older version."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, child_env, jpeg_bytes
from sqlalchemy import select, update

from image_tagger.db import session_scope
from image_tagger.images.models import ImageAnalysis


def _cli(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "image_tagger.cli", *args],
        env=child_env(data_dir, COLUMNS="200"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_reanalyze_runs_the_images_of_older_versions_then_all(data_dir, tmp_path):
    for n in range(2):
        (tmp_path / f"{n}.jpg").write_bytes(jpeg_bytes(150 + n))
    assert _cli(data_dir, "ingest", str(tmp_path)).returncode == 0
    with session_scope(write=True) as session:
        session.execute(
            update(ImageAnalysis)
            .where(ImageAnalysis.image_id == 1)
            .values(pipeline_version="0")
        )

    stale = _cli(data_dir, "reanalyze")
    nothing = _cli(data_dir, "reanalyze")
    everything = _cli(data_dir, "reanalyze", "--all")

    assert stale.returncode == 0, stale.stderr
    assert "job 2: 1 image to analyse again" in stale.stdout
    assert "job 2: COMPLETED" in stale.stdout
    with session_scope() as session:
        versions = session.scalars(
            select(ImageAnalysis.pipeline_version)
            .where(ImageAnalysis.image_id == 1)
            .order_by(ImageAnalysis.pipeline_version)
        ).all()
    assert versions == ["0", "1"]
    assert nothing.returncode == 0
    assert "nothing to re-analyse" in nothing.stdout
    assert "job 3: 2 images to analyse again" in everything.stdout
    assert "job 3: COMPLETED" in everything.stdout
