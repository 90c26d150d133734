"""The VLM analyzers: what each asks the model, and the schema of its answer.

Each analyzer sends the image with its instructions and asks for JSON against
its answer's JSON schema (``response_format`` of type ``json_schema``); the
answer is then validated with the same pydantic model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from image_tagger.settings import Settings
from image_tagger.vlm.schemas import (
    PATTERN_VOCABULARY,
    AnalyzerOutcome,
    CognitiveRating,
    PatternsRating,
)

#: Changes when an analyzer's instructions or schema change (stored with results).
PROMPTS_VERSION = 1

#: The JPEG quality of the image sent to the model, which is the image the
#: metrics measure: sRGB, colours as decoded, long side at most 640 px.
VLM_IMAGE_QUALITY = 90

NOT_CONFIGURED = (
    "no VLM provider is configured: set IMAGE_TAGGER_VLM_MODEL, and "
    "IMAGE_TAGGER_VLM_API_KEY for OpenAI or IMAGE_TAGGER_VLM_BASE_URL for "
    "another provider (with its key if it needs one)"
)


def not_configured(settings: Settings) -> str:
    """Why no VLM provider is configured, naming exactly the settings missing."""
    if not settings.vlm_model and not (settings.vlm_base_url or settings.vlm_api_key):
        return NOT_CONFIGURED
    if not settings.vlm_model:
        given = (
            "IMAGE_TAGGER_VLM_BASE_URL"
            if settings.vlm_base_url
            else "IMAGE_TAGGER_VLM_API_KEY"
        )
        return (
            f"no VLM provider is configured: {given} is set but "
            "IMAGE_TAGGER_VLM_MODEL is not; set it to the id of a model that "
            "accepts images (e.g. gpt-4o-mini)"
        )
    return (
        "no VLM provider is configured: IMAGE_TAGGER_VLM_MODEL is set but "
        "IMAGE_TAGGER_VLM_BASE_URL is not; set it to the provider's URL (e.g. "
        "http://localhost:11434/v1), or instead set IMAGE_TAGGER_VLM_API_KEY to use "
        "OpenAI"
    )


@dataclass(frozen=True)
class Analyzer:
    name: str
    answer: type[BaseModel]
    instructions: str

    def response_format(self) -> dict[str, Any]:
        return {
            "type": "json_schema",
            "json_schema": {
                "name": self.name,
                "schema": self.answer.model_json_schema(),
                "strict": True,
            },
        }


_COMMON = (
    "You are rating a photograph of a building or an interior for a study in "
    "architecture and environmental psychology. Judge only what the photograph "
    "shows. Answer with JSON only, matching the given schema exactly."
)

COGNITIVE = Analyzer(
    name="cognitive",
    answer=CognitiveRating,
    instructions=_COMMON
    + " Rate the scene from 0 (not at all) to 1 (entirely) on each quality: "
    "coherence (the scene hangs together and is easy to organise), complexity "
    "(richness: how much there is to look at), legibility (how easy it would "
    "be to find one's way), mystery (the promise of more to discover by going "
    "further), restorativeness (how restful and refreshing it would be to "
    "spend time there), and how cozy, welcoming, tranquil, scary and jarring "
    "it feels.",
)

PATTERNS = Analyzer(
    name="patterns",
    answer=PatternsRating,
    instructions=_COMMON
    + " For each architectural pattern below, give its presence in the scene "
    "from 0 (absent) to 1 (clearly present), your confidence in that rating "
    "from 0 to 1, and a short evidence phrase naming what in the photograph "
    "shows it (or its absence). Patterns:\n"
    + "\n".join(f"- {name}: {meaning}" for name, meaning in PATTERN_VOCABULARY.items()),
)

#: Every analyzer, in the order they run and are stored.
ANALYZERS: tuple[Analyzer, ...] = (COGNITIVE, PATTERNS)


def skipped(reason: str, model: str | None = None) -> dict[str, dict[str, Any]]:
    """Every analyzer skipped for ``reason``, as stored on an analysis."""
    outcome = AnalyzerOutcome(status="skipped", reason=reason, model=model)
    return {analyzer.name: outcome.model_dump() for analyzer in ANALYZERS}


def keep_paid(
    stored: dict[str, Any] | None, fresh: dict[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``fresh`` outcomes, except that a stored ``ok`` result (already paid for)
    is never replaced by a ``skipped`` or ``error`` one: only a new ``ok`` result
    replaces it. Returns the outcomes to store and the analyzers kept."""
    merged, kept = dict(fresh), []
    for name, outcome in fresh.items():
        earlier = (stored or {}).get(name)
        if outcome.get("status") != "ok" and _is_ok(earlier):
            merged[name] = earlier
            kept.append(name)
    return merged, kept


def _is_ok(outcome: Any) -> bool:
    return isinstance(outcome, dict) and outcome.get("status") == "ok"


def failed(reason: str, model: str | None = None) -> dict[str, dict[str, Any]]:
    """Every analyzer in error for ``reason``, as stored on an analysis."""
    outcome = AnalyzerOutcome(status="error", reason=reason, model=model)
    return {analyzer.name: outcome.model_dump() for analyzer in ANALYZERS}
