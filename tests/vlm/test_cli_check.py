"""``image-tagger vlm check``: one real call to the configured provider."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT, SAMPLE_PHOTOS, child_env
from sqlalchemy import select

from image_tagger.db import dispose_engines, session_scope
from image_tagger.vlm.models import ToolUsage


def _check(data_dir, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "image_tagger.cli", "vlm", "check", *args],
        env=child_env(data_dir, COLUMNS="200", **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _provider(fake, **extra: str) -> dict[str, str]:
    return {
        "IMAGE_TAGGER_VLM_BASE_URL": fake.url,
        "IMAGE_TAGGER_VLM_MODEL": "gpt-4o-mini",
        "IMAGE_TAGGER_VLM_PROVIDER": "openai",
        **extra,
    }


def test_check_prints_the_answer_tokens_and_cost(data_dir, fake):
    fake.prompt_tokens, fake.completion_tokens = 2000, 50
    result = _check(data_dir, **_provider(fake))

    assert result.returncode == 0, result.stderr
    assert "2000 input + 50 output tokens, $0.000330" in result.stdout
    answer = json.loads(result.stdout[result.stdout.index("{") :])
    assert answer["coherence"] == fake.score
    assert fake.log[0].tool == "cognitive"

    dispose_engines()
    with session_scope() as session:
        (row,) = session.scalars(select(ToolUsage)).all()
    assert (row.tool, row.outcome, row.input_tokens) == ("check", "ok", 2000)


def test_check_sends_a_given_photo_and_reports_a_failing_provider(data_dir, fake):
    fake.default_mode = "schema_fail"
    result = _check(data_dir, str(SAMPLE_PHOTOS[0]), **_provider(fake))

    assert result.returncode == 1
    assert result.stdout.count("invalid_answer") == 2
    assert "did not match the schema twice" in result.stderr


def test_check_without_a_provider_says_what_to_set(data_dir):
    result = _check(data_dir)

    assert result.returncode == 2
    assert "IMAGE_TAGGER_VLM_MODEL" in result.stderr
