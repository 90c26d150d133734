"""Grey-level co-occurrence statistics, against Haralick et al. (1973)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import feature

from image_tagger.science.metrics import texture
from image_tagger.science.metrics.fractal import InsufficientDataError
from image_tagger.science.metrics.texture import (
    FEATURES,
    cooccurrence_features,
    cooccurrence_matrix,
    quantize,
    texture_features,
)

# Haralick, Shanmugam and Dinstein, "Textural features for image
# classification", IEEE Trans. SMC-3(6):610-621, 1973, Fig. 2: a 4 x 4 image
# with grey tones 0..3 and its symmetric nearest-neighbour co-occurrence
# matrices for distance 1 at 0, 45, 90 and 135 degrees.
HARALICK_IMAGE = np.array(
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]], dtype=np.uint8
)
HARALICK_COUNTS = {
    0: [[4, 2, 1, 0], [2, 4, 0, 0], [1, 0, 6, 1], [0, 0, 1, 2]],
    45: [[4, 1, 0, 0], [1, 2, 2, 0], [0, 2, 4, 1], [0, 0, 1, 0]],
    90: [[6, 0, 2, 0], [0, 4, 2, 0], [2, 2, 2, 2], [0, 0, 2, 0]],
    135: [[2, 1, 3, 0], [1, 2, 1, 0], [3, 1, 0, 2], [0, 0, 2, 0]],
}


def random_gray(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("angle", [0, 45, 90, 135])
def test_haralick_example_counts(angle: int) -> None:
    counts = cooccurrence_matrix(
        HARALICK_IMAGE, distance=1, angle=angle, levels=4, normed=False
    )

    assert counts.tolist() == HARALICK_COUNTS[angle]


def test_haralick_example_statistics_at_zero_degrees() -> None:
    # By hand from the 0-degree counts above, R = 24 pairs:
    # contrast     = (4 * 1 + 2 * 4 + 2 * 1) / 24       (pairs with |i-j| = 1, 2, 1)
    # homogeneity  = (16 + 6 / 2 + 2 / 5) / 24          (|i-j| = 0, 1, 2)
    # energy (ASM) = (4 * 4**2 + 2 * 2**2 + ...) / 24**2 = 84 / 576
    # correlation  = cov / var with marginal counts (7, 6, 8, 3):
    #                mean = 31/24, var = 65/24 - (31/24)**2 = 599/576,
    #                E[ij] = 58/24, cov = 58/24 - (31/24)**2 = 431/576
    # entropy      = -sum p log2 p over the counts 6, 4, 4, 2, 2, 2, 1, 1, 1, 1
    p = cooccurrence_matrix(HARALICK_IMAGE, distance=1, angle=0, levels=4)

    stats = cooccurrence_features(p)

    def term(count: int) -> float:
        return count / 24 * math.log2(count / 24)

    entropy = -(term(6) + 2 * term(4) + 3 * term(2) + 4 * term(1))
    assert stats["contrast"] == pytest.approx(14 / 24, abs=1e-12)
    assert stats["homogeneity"] == pytest.approx(19.4 / 24, abs=1e-12)
    assert stats["energy"] == pytest.approx(84 / 576, abs=1e-12)
    assert stats["correlation"] == pytest.approx(431 / 599, abs=1e-12)
    assert stats["entropy"] == pytest.approx(entropy, abs=1e-12)


@pytest.mark.parametrize(("distance", "angles"), [(1, (0, 45, 90, 135)), (3, (0, 90))])
def test_matches_scikit_image(distance: int, angles: tuple[int, ...]) -> None:
    # scikit-image counts rows downwards, so its pi/4 offset is our 135 degrees
    # and its 3 pi/4 our 45 degrees (the matrices are symmetric). Beyond
    # distance 1 it places diagonal neighbours at round(d / sqrt 2) rows and
    # columns, where Haralick (and we) use d, so only axes are compared there.
    image = quantize(random_gray((60, 80), seed=1), levels=16)
    skimage_angles = {0: 0.0, 45: 3 * np.pi / 4, 90: np.pi / 2, 135: np.pi / 4}

    for angle in angles:
        ours = cooccurrence_matrix(image, distance=distance, angle=angle, levels=16)
        glcm = feature.graycomatrix(
            image,
            [distance],
            [skimage_angles[angle]],
            levels=16,
            symmetric=True,
            normed=True,
        )
        stats = cooccurrence_features(ours)

        np.testing.assert_allclose(ours, glcm[:, :, 0, 0], atol=1e-15)
        # Our "energy" is Haralick's angular second moment, skimage's "ASM".
        for name, prop in [
            ("contrast", "contrast"),
            ("homogeneity", "homogeneity"),
            ("energy", "ASM"),
            ("correlation", "correlation"),
        ]:
            expected = feature.graycoprops(glcm, prop)[0, 0]
            assert stats[name] == pytest.approx(expected, rel=1e-9)


def test_uniform_image_has_defined_outcomes() -> None:
    stats = texture_features(np.full((32, 32), 77, dtype=np.uint8), distance=1)

    assert stats["contrast"] == 0.0
    assert stats["homogeneity"] == 1.0
    assert stats["energy"] == 1.0
    assert stats["entropy"] == 0.0
    assert math.isnan(stats["correlation"])


def test_statistics_stay_within_their_ranges() -> None:
    levels = 32
    images = [
        random_gray((64, 64), seed=2),
        np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1)),
        np.indices((50, 40)).sum(axis=0).astype(np.uint8) * 5,
        (np.indices((48, 48)).sum(axis=0) % 2 * 255).astype(np.uint8),
    ]
    for image in images:
        for distance in (1, 8):
            stats = texture_features(image, distance=distance, levels=levels)

            assert 0 <= stats["contrast"] <= (levels - 1) ** 2
            assert 0 < stats["homogeneity"] <= 1
            assert 0 < stats["energy"] <= 1
            assert -1 <= stats["correlation"] <= 1
            assert 0 <= stats["entropy"] <= 2 * math.log2(levels)


def test_checkerboard_is_perfectly_anticorrelated_at_distance_one() -> None:
    board = (np.indices((16, 16)).sum(axis=0) % 2 * 255).astype(np.uint8)

    stats = texture_features(board, distance=1, angles=(0, 90))

    assert stats["correlation"] == pytest.approx(-1.0)
    assert stats["contrast"] == 31**2


def test_average_over_four_directions_is_rotation_and_mirror_invariant() -> None:
    image = random_gray((40, 56), seed=3)

    for distance in (1, 8):
        expected = texture_features(image, distance=distance)
        for changed in (np.rot90(image), np.rot90(image, 2), np.fliplr(image)):
            stats = texture_features(np.ascontiguousarray(changed), distance=distance)

            for name in FEATURES:
                assert stats[name] == pytest.approx(expected[name], rel=1e-12)


def test_large_images_are_counted_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    image = quantize(random_gray((64, 64), seed=4), levels=32)
    fast = cooccurrence_matrix(image, distance=2, angle=45, levels=32, normed=False)

    monkeypatch.setattr(texture, "_CALCHIST_MAX_PAIRS", 0)
    exact = cooccurrence_matrix(image, distance=2, angle=45, levels=32, normed=False)

    assert np.array_equal(fast, exact)
    assert exact.dtype == np.int64


def test_quantize_uses_equal_width_bins() -> None:
    gray = np.array([[0, 7, 8, 127, 128, 255]], dtype=np.uint8)

    assert quantize(gray, levels=32).tolist() == [[0, 0, 1, 15, 16, 31]]
    assert quantize(gray, levels=2).tolist() == [[0, 0, 0, 0, 1, 1]]
    assert quantize(gray, levels=256) is gray


@pytest.mark.parametrize(
    ("shape", "distance"), [((5, 5), 8), ((1, 100), 1), ((100, 1), 1), ((1, 1), 1)]
)
def test_images_smaller_than_the_distance_are_insufficient_data(
    shape: tuple[int, int], distance: int
) -> None:
    with pytest.raises(InsufficientDataError, match="needs at least"):
        texture_features(np.zeros(shape, dtype=np.uint8), distance=distance)


def test_the_size_in_the_reason_is_width_by_height() -> None:
    with pytest.raises(InsufficientDataError, match="^a 50x1 px image has no"):
        texture_features(np.zeros((1, 50), dtype=np.uint8), distance=1)


def test_invalid_arguments_are_value_errors() -> None:
    image = np.zeros((8, 8), dtype=np.uint8)

    with pytest.raises(ValueError, match="levels"):
        quantize(image, levels=1)
    with pytest.raises(ValueError, match="angle"):
        cooccurrence_matrix(image, distance=1, angle=30, levels=8)
    with pytest.raises(ValueError, match="distance"):
        cooccurrence_matrix(image, distance=0, angle=0, levels=8)
    with pytest.raises(ValueError, match="whole number of pixels"):
        cooccurrence_matrix(image, distance=1.5, angle=0, levels=8)
    with pytest.raises(ValueError, match="quantise it"):
        cooccurrence_matrix(image + 9, distance=1, angle=0, levels=8)
    with pytest.raises(ValueError, match="uint8"):
        texture_features(image.astype(np.float32), distance=1)
    with pytest.raises(ValueError, match="probabilities"):
        cooccurrence_features(np.ones((4, 4)))
