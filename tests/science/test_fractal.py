"""Box-counting dimension and edge maps, against sets of known dimension."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import feature

from image_tagger.science.metrics.fractal import (
    InsufficientDataError,
    box_counting_dimension,
    box_counts,
    box_sizes,
    edge_map,
)


def sierpinski_carpet(level: int) -> np.ndarray:
    """The Sierpinski carpet after ``level`` steps, 3**level pixels wide.

    A pixel is removed when, at some scale 3**k, it lies in the middle ninth
    of its block: both its row and column digits in base 3 are 1 there.
    """
    side = 3**level
    rows, cols = np.indices((side, side))
    carpet = np.ones((side, side), dtype=bool)
    for k in range(level):
        carpet &= ~(((rows // 3**k) % 3 == 1) & ((cols // 3**k) % 3 == 1))
    return carpet


def smooth_image(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Blurred uniform noise: an 8-bit image with edges of every orientation."""
    noise = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 4)
    stretched = (blurred - blurred.min()) / (blurred.max() - blurred.min()) * 255
    return stretched.astype(np.uint8)


def reference_box_count(mask: np.ndarray, size: int) -> int:
    """Occupied boxes, counted one box at a time."""
    rows, cols = mask.shape
    return sum(
        bool(mask[r : r + size, c : c + size].any())
        for r in range(0, rows, size)
        for c in range(0, cols, size)
    )


# Known dimensions -------------------------------------------------------------


def test_sierpinski_carpet_has_dimension_log8_over_log3() -> None:
    # The carpet is 8 copies of itself scaled by 1/3, so its similarity and
    # box-counting dimension is log 8 / log 3 = 1.8928 (Mandelbrot 1982, The
    # Fractal Geometry of Nature; Falconer 2014, ch. 3 and 9). With boxes that
    # match the construction (3**k pixels) the counts are exactly 8**(5 - k).
    carpet = sierpinski_carpet(5)
    sizes = [1, 3, 9, 27, 81]

    counts = box_counts(carpet, sizes)
    dimension, r2 = box_counting_dimension(carpet, sizes=sizes)

    assert counts.tolist() == [8**5, 8**4, 8**3, 8**2, 8]
    assert dimension == pytest.approx(math.log(8) / math.log(3), abs=1e-12)
    assert r2 == pytest.approx(1.0, abs=1e-12)


def test_sierpinski_carpet_with_the_default_box_sizes() -> None:
    # Powers of two do not match the construction, so the estimate is not
    # exact; over 2..182 px (a quarter of 729) it stays within 0.05 of
    # log 8 / log 3 and the log-log plot is still a straight line.
    carpet = sierpinski_carpet(6)

    dimension, r2 = box_counting_dimension(carpet)

    assert box_sizes(carpet.shape).tolist() == [2, 4, 8, 16, 32, 64, 128]
    assert dimension == pytest.approx(math.log(8) / math.log(3), abs=0.05)
    assert r2 > 0.999


def test_filled_square_has_dimension_two() -> None:
    # N(s) = (256 / s)**2 boxes for every s dividing 256.
    dimension, r2 = box_counting_dimension(np.ones((256, 256), dtype=bool))

    assert dimension == pytest.approx(2.0, abs=1e-12)
    assert r2 == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("direction", ["row", "column", "diagonal"])
def test_straight_line_has_dimension_one(direction: str) -> None:
    # N(s) = 256 / s boxes along a line of 256 pixels.
    mask = np.zeros((256, 256), dtype=bool)
    if direction == "row":
        mask[100, :] = True
    elif direction == "column":
        mask[:, 37] = True
    else:
        np.fill_diagonal(mask, True)

    dimension, r2 = box_counting_dimension(mask)

    assert dimension == pytest.approx(1.0, abs=1e-12)
    assert r2 == pytest.approx(1.0, abs=1e-12)


def test_single_point_has_dimension_zero_and_undefined_r2() -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[10, 20] = True

    dimension, r2 = box_counting_dimension(mask)

    assert dimension == 0.0
    assert math.isnan(r2)


# Box sizes and counts ---------------------------------------------------------


def test_default_box_sizes_are_powers_of_two_up_to_a_quarter_side() -> None:
    assert box_sizes((640, 1024)).tolist() == [2, 4, 8, 16, 32, 64, 128]
    assert box_sizes((100, 50)).tolist() == [2, 4, 8]
    assert box_sizes((3, 3)).tolist() == []
    assert box_sizes((640, 1024), min_box=8, max_box=40).tolist() == [8, 16, 32]


def test_partial_boxes_at_the_borders_count() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[4, 4] = True

    assert box_counts(mask, [2, 4]).tolist() == [1, 1]
    assert box_counts(np.ones((3, 3), dtype=bool), [2]).tolist() == [4]


def test_box_counts_match_a_box_by_box_count() -> None:
    rng = np.random.default_rng(7)
    sizes = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 33]
    for shape, density in [((50, 70), 0.01), ((97, 64), 0.2), ((33, 33), 0.5)]:
        mask = rng.random(shape) < density

        expected = [reference_box_count(mask, size) for size in sizes]

        assert box_counts(mask, sizes).tolist() == expected


# Properties -------------------------------------------------------------------


def test_dimension_is_between_zero_and_two_and_r2_at_most_one() -> None:
    # On grids that nest exactly (sides divisible by every box size) the count
    # can neither grow with the box size nor fall faster than 1 / s**2.
    rng = np.random.default_rng(11)
    for density in [0.001, 0.01, 0.1, 0.5, 0.9]:
        mask = rng.random((256, 512)) < density

        dimension, r2 = box_counting_dimension(mask)

        assert 0.0 <= dimension <= 2.0
        assert r2 <= 1.0


def test_dimension_of_edges_is_nearly_unchanged_by_rotation() -> None:
    image = smooth_image((480, 640), seed=3)

    dimension, _ = box_counting_dimension(edge_map(image))
    rotated, _ = box_counting_dimension(edge_map(np.rot90(image).copy()))

    assert rotated == pytest.approx(dimension, abs=0.03)


def test_too_few_box_sizes_or_an_empty_set_is_insufficient_data() -> None:
    with pytest.raises(InsufficientDataError, match="too small for box counting"):
        box_counting_dimension(np.ones((20, 20), dtype=bool))
    with pytest.raises(InsufficientDataError, match="at least 3 box sizes"):
        box_counting_dimension(np.ones((20, 20), dtype=bool), sizes=[1, 2])
    with pytest.raises(InsufficientDataError, match="empty"):
        box_counting_dimension(np.zeros((64, 64), dtype=bool))


@pytest.mark.parametrize(
    "mask",
    [np.ones((8, 8), dtype=np.uint8), np.ones((4, 4, 2), dtype=bool), [[True]]],
)
def test_wrong_input_types_are_value_errors(mask: object) -> None:
    with pytest.raises(ValueError, match="2-D numpy array of bool") as info:
        box_counting_dimension(mask)  # type: ignore[arg-type]

    assert not isinstance(info.value, InsufficientDataError)


def test_bad_box_sizes_are_value_errors() -> None:
    with pytest.raises(ValueError, match="sizes"):
        box_counts(np.ones((8, 8), dtype=bool), [0, 2])
    with pytest.raises(ValueError, match="min_box"):
        box_sizes((64, 64), min_box=0)


# Edge map ---------------------------------------------------------------------


def test_uniform_image_has_no_edges() -> None:
    for level in (0, 128, 255):
        edges = edge_map(np.full((64, 64), level, dtype=np.uint8))

        assert edges.dtype == bool and not edges.any()


def test_edges_of_a_square_lie_on_its_outline() -> None:
    image = np.zeros((64, 64), dtype=np.uint8)
    image[16:48, 16:48] = 200

    edges = edge_map(image)

    rows, cols = np.nonzero(edges)
    assert edges.sum() > 4 * 28
    near_outline = np.minimum(
        np.minimum(np.abs(rows - 15.5), np.abs(rows - 47.5)),
        np.minimum(np.abs(cols - 15.5), np.abs(cols - 47.5)),
    )
    assert near_outline.max() <= 1.5


def test_edge_map_agrees_with_scikit_image_canny() -> None:
    # Same definition and default thresholds as skimage.feature.canny; the
    # implementations differ in sub-pixel interpolation and border handling,
    # so compare the interior and allow a one-pixel shift.
    image = smooth_image((240, 320), seed=5)

    ours = edge_map(image)
    theirs = feature.canny(image, sigma=1.0)

    inner = (slice(4, -4), slice(4, -4))
    near_theirs = cv2.dilate(theirs.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    near_ours = cv2.dilate(ours.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (ours & near_theirs)[inner].sum() / ours[inner].sum() > 0.95
    assert (theirs & near_ours)[inner].sum() / theirs[inner].sum() > 0.95


def test_edge_map_of_tiny_images() -> None:
    for shape in [(1, 1), (1, 7), (3, 3)]:
        assert edge_map(np.zeros(shape, dtype=np.uint8)).shape == shape


def test_edge_map_rejects_colour_and_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="luma"):
        edge_map(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="low_threshold"):
        edge_map(np.zeros((8, 8), dtype=np.uint8), low_threshold=60)
