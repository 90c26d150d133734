"""The whole metric set of an image: stable keys, plain numbers, reasons for gaps."""

from __future__ import annotations

import json
import math
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import SAMPLE_PHOTOS, STABLE_KEYS
from PIL import Image

from image_tagger.images.decode import (
    ANALYSIS_MAX_SIDE,
    ImageDecodeError,
    load_analysis_image,
)
from image_tagger.science.compute import (
    METRIC_DEFINITIONS,
    METRIC_KEYS,
    PIPELINE_PARAMS,
    MetricsResult,
    analyze_file,
    compute_metrics,
)

# Metrics whose definition does not change when the image turns by 90 degrees.
EXACTLY_ROTATION_INVARIANT = [
    key
    for key in METRIC_KEYS
    if key.startswith(("color.", "texture.")) or key == "complexity.entropy_bits"
]


def scene(shape: tuple[int, int] = (320, 480), seed: int = 0) -> np.ndarray:
    """A colourful synthetic image: smooth colour noise, some lines and blocks."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (*shape, 3)).astype(np.float32)
    rgb = cv2.GaussianBlur(noise, (0, 0), 5)
    rgb = (rgb - rgb.min()) / (rgb.max() - rgb.min()) * 255
    rgb = rgb.astype(np.uint8)
    for _ in range(12):
        x0, y0 = rng.integers(0, shape[1]), rng.integers(0, shape[0])
        x1, y1 = rng.integers(0, shape[1]), rng.integers(0, shape[0])
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(rgb, (int(x0), int(y0)), (int(x1), int(y1)), colour, 2)
        cv2.rectangle(rgb, (int(x0), int(y0)), (int(x0) + 30, int(y0) + 20), colour, -1)
    return rgb


def assert_well_formed(result: MetricsResult) -> None:
    assert tuple(result.metrics) == METRIC_KEYS
    assert set(result.metrics) >= STABLE_KEYS
    for key, value in result.metrics.items():
        if value is None:
            assert result.notes.get(key), f"{key} is None without a reason"
        else:
            assert type(value) is float and math.isfinite(value), key
    assert set(result.notes) == {k for k, v in result.metrics.items() if v is None}
    json.dumps(result.metrics, allow_nan=False)


def test_a_photo_like_image_has_every_metric() -> None:
    result = compute_metrics(scene())

    assert_well_formed(result)
    assert result.notes == {}
    assert result.shape == (320, 480)
    values = result.metrics
    assert 1.0 < values["fractal.dimension"] < 2.0
    assert 0.9 < values["fractal.r2"] <= 1.0
    assert values["texture.coarse.contrast"] > values["texture.fine.contrast"]
    for scale in ("fine", "coarse"):
        assert 0 <= values[f"texture.{scale}.homogeneity"] <= 1
        assert 0 <= values[f"texture.{scale}.energy"] <= 1
        assert -1 <= values[f"texture.{scale}.correlation"] <= 1
    assert 0 <= values["color.warm_fraction"] <= 1
    assert 0 <= values["complexity.edge_density"] <= 1
    assert 0 < values["complexity.entropy_bits"] <= 8


def test_uniform_grey_image_has_defined_values_and_reasons() -> None:
    result = compute_metrics(np.full((256, 256, 3), 128, dtype=np.uint8))

    assert_well_formed(result)
    values, notes = result.metrics, result.notes
    assert (
        values["fractal.dimension"] is None and "no edges" in notes["fractal.dimension"]
    )
    assert values["texture.fine.contrast"] == 0.0
    assert values["texture.fine.energy"] == 1.0
    assert values["texture.coarse.homogeneity"] == 1.0
    assert values["texture.fine.correlation"] is None
    assert "single grey level" in notes["texture.fine.correlation"]
    assert values["color.colorfulness"] == 0.0
    assert values["color.warm_fraction"] is None
    assert "no chromatic pixel" in notes["color.warm_fraction"]
    assert values["color.chromatic_fraction"] == 0.0
    assert values["complexity.entropy_bits"] == 0.0
    assert values["complexity.edge_density"] == 0.0


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 1024), (1024, 1), (2, 1024), (3, 3), (8, 8), (20, 20)]
)
def test_tiny_and_elongated_images_give_none_with_reasons(
    shape: tuple[int, int],
) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)

    result = compute_metrics(rgb)

    assert_well_formed(result)
    assert result.metrics["fractal.dimension"] is None
    assert "box sizes" in result.notes["fractal.dimension"]
    if min(shape) <= 8:
        assert result.metrics["texture.coarse.contrast"] is None
        assert "needs at least 9 px" in result.notes["texture.coarse.contrast"]
    assert result.metrics["color.lightness_mean"] is not None
    assert result.metrics["complexity.entropy_bits"] is not None


def test_rotation_leaves_invariant_metrics_unchanged() -> None:
    rgb = scene(seed=2)

    original = compute_metrics(rgb).metrics
    rotated = compute_metrics(np.ascontiguousarray(np.rot90(rgb))).metrics

    for key in EXACTLY_ROTATION_INVARIANT:
        assert rotated[key] == pytest.approx(original[key], rel=1e-5, abs=1e-9), key
    for key, tolerance in [
        ("fractal.dimension", 0.03),
        ("complexity.edge_density", 0.03),
        ("complexity.compression_ratio", 0.05),
    ]:
        assert rotated[key] == pytest.approx(original[key], rel=tolerance), key


def test_analyze_file_decodes_then_computes(tmp_path: Path) -> None:
    path = tmp_path / "scene.png"
    Image.fromarray(scene((400, 2000))).save(path)

    result = analyze_file(path)

    assert result.shape == (round(400 * ANALYSIS_MAX_SIDE / 2000), ANALYSIS_MAX_SIDE)
    assert result == compute_metrics(load_analysis_image(path))


def test_analyze_file_runs_in_a_process_pool(tmp_path: Path) -> None:
    path = tmp_path / "scene.jpg"
    Image.fromarray(scene()).save(path, quality=90)

    with ProcessPoolExecutor(max_workers=1) as pool:
        result = pool.submit(analyze_file, path).result()

    assert result == analyze_file(path)
    assert pickle.loads(pickle.dumps(result)) == result


def test_analyze_file_reports_undecodable_files(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")

    with pytest.raises(ImageDecodeError):
        analyze_file(path)


def test_every_key_has_a_definition() -> None:
    assert set(METRIC_DEFINITIONS) == set(METRIC_KEYS)


def test_pipeline_params_are_json_and_name_every_parameter() -> None:
    text = json.dumps(PIPELINE_PARAMS, allow_nan=False)

    for name in [
        "max_side_px",
        "grey_levels",
        "fine_distance_px",
        "coarse_distance_px",
        "sigma_px",
        "box_sizes_px",
        "chroma_threshold",
        "warm_hue_range_deg",
        "compression_quality",
    ]:
        assert f'"{name}"' in text


@pytest.mark.parametrize(
    "rgb",
    [
        np.zeros((8, 8), dtype=np.uint8),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((8, 8, 3), dtype=np.float32),
        np.zeros((0, 8, 3), dtype=np.uint8),
    ],
)
def test_wrong_arrays_are_value_errors(rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="rgb must be"):
        compute_metrics(rgb)


def test_values_barely_depend_on_the_size_of_the_source_file(tmp_path: Path) -> None:
    # The same photo saved at four sizes, all above the analysis resolution:
    # one is DCT-scaled exactly to it, the others are resampled. With plain or
    # antialiased bilinear resampling the fine contrast moves by 13 %.
    photo = next(p for p in SAMPLE_PHOTOS if p.name == "Kite.jpg")
    with Image.open(photo) as image:
        source = image.convert("RGB")
    results = []
    for side in (2560, 1900, 1300, 900):
        path = tmp_path / f"{side}.jpg"
        scale = side / max(source.size)
        size = (round(source.width * scale), round(source.height * scale))
        source.resize(size, Image.Resampling.LANCZOS).save(path, quality=92)
        results.append(analyze_file(path).metrics)

    for key, tolerance in [
        ("texture.fine.contrast", 0.05),
        ("texture.coarse.contrast", 0.03),
        ("complexity.edge_density", 0.05),
        ("complexity.compression_ratio", 0.05),
        ("fractal.dimension", 0.02),
        ("color.colorfulness", 0.01),
    ]:
        values = [result[key] for result in results]
        assert max(values) / min(values) - 1 < tolerance, (key, values)
