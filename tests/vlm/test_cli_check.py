"""``image-tagger vlm check``: one real call to the configured provider."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT, SAMPLE_PHOTOS, child_env, free_port
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


def test_check_names_exactly_the_setting_that_is_missing(data_dir):
    only_model = _check(data_dir, IMAGE_TAGGER_VLM_MODEL="gpt-4o-mini")
    only_url = _check(data_dir, IMAGE_TAGGER_VLM_BASE_URL="http://127.0.0.1:9/v1")

    assert only_model.returncode == only_url.returncode == 2
    assert "IMAGE_TAGGER_VLM_MODEL is set but IMAGE_TAGGER_VLM_BASE_URL is not" in (
        only_model.stderr
    )
    assert "set IMAGE_TAGGER_VLM_MODEL" not in only_model.stderr
    assert "IMAGE_TAGGER_VLM_BASE_URL is set but IMAGE_TAGGER_VLM_MODEL is not" in (
        only_url.stderr
    )


def test_check_of_an_unreachable_provider_says_no_usage_and_reads_cleanly(
    data_dir,
):
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    result = _check(
        data_dir,
        IMAGE_TAGGER_VLM_BASE_URL=closed,
        IMAGE_TAGGER_VLM_MODEL="gpt-4o-mini",
        IMAGE_TAGGER_VLM_PROVIDER="openai",
        IMAGE_TAGGER_VLM_MAX_ATTEMPTS="2",
        IMAGE_TAGGER_VLM_BACKOFF_SECONDS="0.01",
    )

    assert result.returncode == 1
    assert result.stdout.count("connection_error") == 2
    assert result.stdout.count("no usage reported, no cost") == 2
    assert "None" not in result.stdout
    assert f"error: cannot reach {closed}: Connection error; gave up after 2" in (
        result.stderr.replace("\n", " ")
    )
    assert ".;" not in result.stderr


def test_check_with_an_unknown_price_says_which_settings_give_one(data_dir, fake):
    result = _check(data_dir, **_provider(fake, IMAGE_TAGGER_VLM_MODEL="fake-vision-1"))

    assert result.returncode == 0, result.stderr
    assert "1000 input + 100 output tokens, unknown price" in result.stdout
    hint = " ".join(result.stdout.split())
    assert "the price of fake-vision-1 at openai is unknown: set" in hint
    assert "IMAGE_TAGGER_VLM_PROVIDER" in hint
    assert "IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD and" in hint


def test_a_bad_setting_is_told_in_our_words_without_pydantic_prefixes(data_dir):
    result = _check(data_dir, IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD="2")

    assert result.returncode == 2
    assert "Value error" not in result.stderr
    assert result.stderr.splitlines() == [
        "invalid settings: set both IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD and "
        "IMAGE_TAGGER_VLM_PRICE_OUTPUT_PER_MTOK_USD, or neither"
    ]
