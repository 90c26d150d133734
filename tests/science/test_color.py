"""CIELAB statistics, colourfulness and warm hues, against known colours."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

from image_tagger.science.metrics.color import (
    chroma_hue,
    chromatic_fraction,
    colorfulness,
    hue_entropy,
    lightness_statistics,
    luma,
    rgb_to_lab,
    warm_fraction,
)
from image_tagger.science.metrics.fractal import InsufficientDataError

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
YELLOW = (255, 255, 0)


def solid(colour: tuple[int, int, int], shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (*shape, 3)).copy()


def halves(left: tuple[int, int, int], right: tuple[int, int, int]) -> np.ndarray:
    return np.concatenate([solid(left), solid(right)], axis=1)


def smooth_colour_image(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Blurred colour noise stretched over the full 8-bit range."""
    noise = np.random.default_rng(seed).uniform(0, 255, (*shape, 3))
    blurred = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 12)
    low, high = blurred.min(axis=(0, 1)), blurred.max(axis=(0, 1))
    return ((blurred - low) / (high - low) * 255).round().astype(np.uint8)


def color_metrics(rgb: np.ndarray) -> dict[str, float]:
    lab = rgb_to_lab(rgb)
    chroma, hue = chroma_hue(lab)
    mean, std = lightness_statistics(lab)
    return {
        "lightness_mean": mean,
        "lightness_std": std,
        "chroma_mean": float(chroma.mean()),
        "colorfulness": colorfulness(rgb),
        "warm_fraction": warm_fraction(chroma, hue),
        "chromatic_fraction": chromatic_fraction(chroma),
        "hue_entropy": hue_entropy(chroma, hue),
    }


# CIELAB -----------------------------------------------------------------------


def test_lab_of_reference_colours() -> None:
    # sRGB red in CIELAB (D65): L* 53.24, a* 80.09, b* 67.20 (IEC 61966-2-1
    # matrix and CIE 15:2004 formulas, as tabulated by skimage and Lindbloom).
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], dtype=np.uint8)

    lab = rgb_to_lab(rgb)

    np.testing.assert_allclose(lab[0, 0], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[0, 1], [0, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[0, 2], [53.24, 80.09, 67.20], atol=0.05)


def test_lab_agrees_with_scikit_image() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    np.testing.assert_allclose(rgb_to_lab(rgb), skcolor.rgb2lab(rgb), atol=0.05)


def test_chroma_and_hue_of_primaries() -> None:
    rgb = np.array([[RED, YELLOW, GREEN, BLUE, (128, 128, 128)]], dtype=np.uint8)

    chroma, hue = chroma_hue(rgb_to_lab(rgb))

    lab = skcolor.rgb2lab(rgb)
    expected_hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360
    np.testing.assert_allclose(hue[0, :4], expected_hue[0, :4], atol=0.05)
    np.testing.assert_allclose(hue[0, :4], [40.0, 102.9, 136.0, 306.3], atol=0.1)
    np.testing.assert_allclose(
        chroma[0, :4], np.hypot(lab[0, :4, 1], lab[0, :4, 2]), atol=0.05
    )
    assert chroma[0, 4] < 0.01
    assert ((hue >= 0) & (hue < 360)).all()


def test_lightness_of_half_black_half_white() -> None:
    mean, std = lightness_statistics(rgb_to_lab(halves((0, 0, 0), (255, 255, 255))))

    assert mean == pytest.approx(50.0, abs=0.01)
    assert std == pytest.approx(50.0, abs=0.01)


def test_luma_uses_rec601_weights() -> None:
    rgb = np.array([[RED, GREEN, BLUE, (255, 255, 255)]], dtype=np.uint8)

    # 0.299, 0.587, 0.114 times 255, rounded.
    assert luma(rgb).tolist() == [[76, 150, 29, 255]]


# Colourfulness ----------------------------------------------------------------


def test_grey_images_have_zero_colourfulness() -> None:
    rng = np.random.default_rng(1)
    grey = np.repeat(rng.integers(0, 256, (32, 32, 1), dtype=np.uint8), 3, axis=2)

    assert colorfulness(grey) == 0.0
    assert colorfulness(solid((128, 128, 128))) == 0.0


def test_half_red_half_green_colourfulness() -> None:
    # Hasler and Suesstrunk (2003): rg = R - G is +255 and -255 (std 255, mean
    # 0); yb = (R + G) / 2 - B is 127.5 in both halves (std 0, mean 127.5);
    # M = sqrt(255**2 + 0**2) + 0.3 * sqrt(0**2 + 127.5**2) = 293.25.
    assert colorfulness(halves(RED, GREEN)) == pytest.approx(293.25, abs=1e-9)


def test_uniform_red_colourfulness() -> None:
    # rg = 255 and yb = 127.5 everywhere: M = 0.3 * sqrt(255**2 + 127.5**2).
    expected = 0.3 * math.hypot(255, 127.5)

    assert colorfulness(solid(RED)) == pytest.approx(expected, abs=1e-9)


# Warm hues and hue entropy ----------------------------------------------------


@pytest.mark.parametrize(
    ("colour", "warm"),
    [
        (RED, True),
        ((255, 128, 0), True),  # orange
        (YELLOW, True),
        ((255, 0, 128), True),  # red-violet
        ((220, 200, 170), True),  # beige
        ((128, 255, 0), False),  # yellow-green
        (GREEN, False),
        ((0, 255, 255), False),  # cyan
        (BLUE, False),
        ((128, 0, 255), False),  # violet
        ((60, 120, 40), False),  # foliage
    ],
)
def test_warm_hues(colour: tuple[int, int, int], warm: bool) -> None:
    chroma, hue = chroma_hue(rgb_to_lab(solid(colour)))

    assert warm_fraction(chroma, hue) == float(warm)


def test_warm_fraction_counts_chromatic_pixels_only() -> None:
    red_and_blue = chroma_hue(rgb_to_lab(halves(RED, BLUE)))
    red_and_grey = chroma_hue(rgb_to_lab(halves(RED, (128, 128, 128))))

    assert warm_fraction(*red_and_blue) == 0.5
    assert warm_fraction(*red_and_grey) == 1.0
    assert chromatic_fraction(red_and_grey[0]) == 0.5


def test_warm_sector_may_wrap_or_not() -> None:
    chroma, hue = chroma_hue(rgb_to_lab(halves(RED, BLUE)))

    assert warm_fraction(chroma, hue, warm_hues=(0.0, 90.0)) == 0.5
    assert warm_fraction(chroma, hue, warm_hues=(300.0, 320.0)) == 0.5
    assert warm_fraction(chroma, hue, warm_hues=(-100.0, 0.0)) == 0.5
    with pytest.raises(ValueError, match="warm_hues"):
        warm_fraction(chroma, hue, warm_hues=(90.0, 0.0))


def test_hue_entropy_of_one_hue_and_of_twelve_equal_sectors() -> None:
    single = chroma_hue(rgb_to_lab(solid(RED)))
    # One chromatic pixel in the middle of each 30-degree sector.
    angles = np.radians(np.arange(12) * 30 + 15)
    lab = np.stack([np.full(12, 50.0), 40 * np.cos(angles), 40 * np.sin(angles)], -1)
    spread = chroma_hue(lab[np.newaxis].astype(np.float32))

    assert hue_entropy(*single) == 0.0
    assert hue_entropy(*spread) == pytest.approx(math.log2(12), abs=1e-12)
    assert hue_entropy(*spread, bins=4) == pytest.approx(2.0, abs=1e-12)


def test_grey_images_have_no_chromatic_pixels() -> None:
    chroma, hue = chroma_hue(rgb_to_lab(halves((0, 0, 0), (200, 200, 200))))

    assert chromatic_fraction(chroma) == 0.0
    with pytest.raises(InsufficientDataError, match="no chromatic pixel"):
        warm_fraction(chroma, hue)
    with pytest.raises(InsufficientDataError, match="no chromatic pixel"):
        hue_entropy(chroma, hue)


# Properties -------------------------------------------------------------------


def test_values_stay_within_their_ranges() -> None:
    for seed in range(4):
        rgb = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)

        values = color_metrics(rgb)

        assert 0 <= values["lightness_mean"] <= 100
        assert 0 <= values["lightness_std"] <= 50
        assert values["chroma_mean"] >= 0
        assert values["colorfulness"] >= 0
        assert 0 <= values["warm_fraction"] <= 1
        assert 0 <= values["chromatic_fraction"] <= 1
        assert 0 <= values["hue_entropy"] <= math.log2(12)


def test_rotation_leaves_every_colour_metric_unchanged() -> None:
    rgb = smooth_colour_image((120, 160), seed=2)

    expected = color_metrics(rgb)
    rotated = color_metrics(np.ascontiguousarray(np.rot90(rgb)))

    for name, value in expected.items():
        assert rotated[name] == pytest.approx(value, rel=1e-5, abs=1e-9)


def test_rescaling_within_the_analysis_resolution_changes_little() -> None:
    rgb = smooth_colour_image((640, 1024), seed=3)
    half = np.asarray(
        Image.fromarray(rgb).resize((512, 320), Image.Resampling.BILINEAR)
    )

    full, small = color_metrics(rgb), color_metrics(half)

    assert small["lightness_mean"] == pytest.approx(full["lightness_mean"], abs=0.5)
    assert small["lightness_std"] == pytest.approx(full["lightness_std"], rel=0.03)
    assert small["chroma_mean"] == pytest.approx(full["chroma_mean"], rel=0.03)
    assert small["colorfulness"] == pytest.approx(full["colorfulness"], rel=0.03)
    assert small["warm_fraction"] == pytest.approx(full["warm_fraction"], abs=0.02)
    assert small["hue_entropy"] == pytest.approx(full["hue_entropy"], abs=0.05)


def test_wrong_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="uint8 array of sRGB"):
        rgb_to_lab(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8 array of sRGB"):
        colorfulness(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="float array of CIELAB"):
        chroma_hue(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        warm_fraction(np.ones((4, 4)) * 20, np.zeros((4, 5)))
