"""A fake VLM provider on loopback and an app configured to use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fake_vlm import FakeVLM

from image_tagger.settings import reset_settings

PRICED_MODEL = "gpt-4o-mini"  # known to genai-prices under the provider "openai"


@pytest.fixture
def fake() -> Iterator[FakeVLM]:
    with FakeVLM() as server:
        yield server


@pytest.fixture
def vlm_env(
    fake: FakeVLM, header_mode, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., None]:
    """Point the settings at the fake provider; keyword arguments add settings."""

    def configure(**settings: object) -> None:
        values = {
            "vlm_base_url": fake.url,
            "vlm_model": PRICED_MODEL,
            "vlm_provider": "openai",
            "vlm_backoff_seconds": 0.01,
            "vlm_timeout_seconds": 5,
            "workers": 1,
            **settings,
        }
        for name, value in values.items():
            monkeypatch.setenv(f"IMAGE_TAGGER_{name.upper()}", str(value))
        reset_settings()

    configure()
    return configure
