"""Shapes of the models' answers (validated) and of the cost ledger's report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

Score = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    # Unknown keys fail validation: the schema sent to the model forbids them.
    model_config = ConfigDict(extra="forbid")


class CognitiveRating(_Strict):
    """The scene rated 0 (not at all) to 1 (entirely) on each quality."""

    coherence: Score = Field(description="how well the scene hangs together")
    complexity: Score = Field(description="how much there is to look at")
    legibility: Score = Field(description="how easy it is to find one's way")
    mystery: Score = Field(description="how much it promises more to discover")
    restorativeness: Score = Field(description="how restful it is to be in")
    cozy: Score
    welcoming: Score
    tranquil: Score
    scary: Score
    jarring: Score


#: The architectural patterns rated by the patterns analyzer, with what each
#: means; the keys are stable (exports and the API use them).
PATTERN_VOCABULARY: dict[str, str] = {
    "prospect": "a wide, open view out over a space or landscape",
    "refuge": "a sheltered, protected place to be, with the back covered",
    "nook": "a small, partly enclosed alcove within a larger room",
    "double_height": "a space two or more storeys tall",
    "daylight": "natural light entering the space",
    "window_seat": "a place to sit built into or beside a window",
    "enclosure": "a space clearly bounded by walls, screens or planting",
    "threshold": "a marked transition between inside and outside or two spaces",
    "view_to_nature": "plants, trees, water or sky visible from the space",
    "ceiling_variety": "ceiling heights that change from one area to another",
    "courtyard": "an open space surrounded by building",
    "arcade": "a covered walkway along a row of arches or columns",
}


class PatternRating(_Strict):
    presence: Score = Field(description="0: absent; 1: clearly present")
    confidence: Score = Field(description="how sure the rating is")
    evidence: str = Field(description="a short phrase: what in the image shows it")


PatternsBody = create_model(
    "PatternsBody",
    __base__=_Strict,
    **{name: (PatternRating, ...) for name in PATTERN_VOCABULARY},
)


class PatternsRating(_Strict):
    """Each pattern of the vocabulary: presence, confidence and evidence."""

    patterns: PatternsBody  # type: ignore[valid-type]


class AnalyzerOutcome(BaseModel):
    """What one analyzer gave for one image, as stored on its analysis."""

    status: str  # "ok", "error" or "skipped"
    reason: str | None = None
    model: str | None = None
    result: dict[str, Any] | None = None


class CallTotals(BaseModel):
    """A group of calls: how many, their tokens, and what they cost."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(
        description="the sum of the known costs; null when no call of the group "
        "has one (an unknown price is null, never zero)"
    )
    unpriced_calls: int = Field(
        description="calls of the group that ended without a known cost, not in "
        "cost_usd"
    )
    no_usage_calls: int = Field(
        description="of the unpriced calls, those that reported no usage: failed "
        "before an answer (a connection error, a timeout, a 429 or 5xx, an answer "
        "that was not a chat completion) or interrupted (their process stopped "
        "while they were in flight)"
    )
    in_flight_calls: int = Field(
        description="calls of the group sent and not answered yet: neither priced "
        "nor unpriced until they end"
    )


class DayCost(CallTotals):
    day: str


class ModelCost(CallTotals):
    provider: str
    model: str


class ToolCost(CallTotals):
    tool: str


class CallOut(BaseModel):
    id: int
    created_at: datetime
    tool: str
    provider: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    latency_ms: float | None
    outcome: str
    error: str | None
    image_id: int | None
    job_id: int | None


class CostsOut(BaseModel):
    currency: str = "USD"
    budget_usd: float | None
    spent_usd: float
    reserved_usd: float = Field(
        description="what the calls in flight may cost: those of every process, "
        "recorded in the ledger, and those of this server about to be sent"
    )
    remaining_usd: float | None
    unpriced_calls: int = Field(
        description="calls that ended with an unknown cost (price unknown, no "
        "usage reported, or interrupted)"
    )
    no_usage_calls: int = Field(
        description="of the unpriced calls, those that reported no usage"
    )
    in_flight_calls: int = Field(
        description="calls sent and not answered yet, by any process; their "
        "reservations are in reserved_usd"
    )
    by_day: list[DayCost]
    by_model: list[ModelCost]
    by_analyzer: list[ToolCost]
    recent: list[CallOut]
