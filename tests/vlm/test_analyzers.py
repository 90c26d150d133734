"""The analyzers' schemas: what strict JSON-schema output needs, and validation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from image_tagger.vlm.analyzers import ANALYZERS, COGNITIVE, PATTERNS
from image_tagger.vlm.schemas import PATTERN_VOCABULARY


def _objects(schema: dict):
    if schema.get("type") == "object":
        yield schema
    for value in schema.values():
        if isinstance(value, dict):
            yield from _objects(value)


@pytest.mark.parametrize("analyzer", ANALYZERS, ids=lambda a: a.name)
def test_every_object_is_closed_and_requires_every_property(analyzer):
    # Strict structured output accepts only closed objects with all keys required.
    response_format = analyzer.response_format()
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    objects = list(_objects(response_format["json_schema"]["schema"]))
    assert objects
    for schema in objects:
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == set(schema["properties"])


def test_the_patterns_prompt_names_every_pattern_of_the_vocabulary():
    for name in PATTERN_VOCABULARY:
        assert f"- {name}: " in PATTERNS.instructions
    assert {"prospect", "refuge", "nook", "double_height", "daylight"} <= set(
        PATTERN_VOCABULARY
    )


def test_answers_out_of_range_or_with_extra_keys_are_refused():
    good = dict.fromkeys(COGNITIVE.answer.model_fields, 0.5)
    assert COGNITIVE.answer.model_validate_json(json.dumps(good)).cozy == 0.5
    for bad in ({**good, "cozy": 1.5}, {**good, "extra": 0.1}, {"cozy": 0.2}):
        with pytest.raises(ValidationError):
            COGNITIVE.answer.model_validate_json(json.dumps(bad))
