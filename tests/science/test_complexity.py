"""Grey-level entropy, edge density and compression ratio."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from image_tagger.science.metrics.complexity import (
    compression_ratio,
    edge_density,
    gray_entropy,
)
from image_tagger.science.metrics.fractal import InsufficientDataError, edge_map


def smooth_gray(shape: tuple[int, int], seed: int, sigma: float = 6) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    stretched = (blurred - blurred.min()) / (blurred.max() - blurred.min()) * 255
    return stretched.round().astype(np.uint8)


# Entropy: H = -sum p log2 p (Shannon 1948) -------------------------------------


def test_entropy_of_a_constant_image_is_zero() -> None:
    assert gray_entropy(np.full((16, 16), 200, dtype=np.uint8)) == 0.0


def test_entropy_of_half_black_half_white_is_one_bit() -> None:
    # Two levels with p = 1/2 each: -2 * (1/2) log2(1/2) = 1.
    image = np.zeros((16, 16), dtype=np.uint8)
    image[:, 8:] = 255

    assert gray_entropy(image) == pytest.approx(1.0, abs=1e-12)


def test_entropy_of_equally_used_levels_is_eight_bits() -> None:
    # Each of the 256 levels exactly 4 times: log2(256) = 8.
    image = np.tile(np.arange(256, dtype=np.uint8), (4, 1))

    assert gray_entropy(image) == pytest.approx(8.0, abs=1e-12)


def test_entropy_of_uniform_noise_is_nearly_eight_bits() -> None:
    # The histogram of n uniform draws over K = 256 levels underestimates
    # log2 K by about (K - 1) / (2 n ln 2) bits (Miller, "Note on the bias of
    # information estimates", 1955): 0.0007 bits for n = 512 * 512.
    noise = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)

    assert gray_entropy(noise) == pytest.approx(
        8 - 255 / (2 * 512 * 512 * math.log(2)), abs=5e-4
    )


def test_entropy_ignores_rotation() -> None:
    image = smooth_gray((60, 90), seed=1)

    assert gray_entropy(np.rot90(image).copy()) == gray_entropy(image)


# Edge density -----------------------------------------------------------------


def test_edge_density_bounds_and_known_values() -> None:
    assert edge_density(np.zeros((10, 10), dtype=bool)) == 0.0
    assert edge_density(np.ones((10, 10), dtype=bool)) == 1.0
    half = np.zeros((10, 10), dtype=bool)
    half[:5] = True
    assert edge_density(half) == 0.5


def test_edge_density_of_images_is_a_fraction_and_nearly_rotation_invariant() -> None:
    image = smooth_gray((240, 320), seed=2, sigma=3)

    density = edge_density(edge_map(image))
    rotated = edge_density(edge_map(np.rot90(image).copy()))

    assert 0.0 < density < 1.0
    assert rotated == pytest.approx(density, rel=0.02)
    assert edge_density(edge_map(np.full((32, 32), 9, dtype=np.uint8))) == 0.0


def test_edge_density_rejects_grey_images() -> None:
    with pytest.raises(ValueError, match="edge_map"):
        edge_density(np.zeros((4, 4), dtype=np.uint8))


# Compression ratio ------------------------------------------------------------


@pytest.mark.parametrize("method", ["jpeg", "deflate"])
def test_compression_ratio_grows_with_detail(method: str) -> None:
    constant = np.full((128, 128), 90, dtype=np.uint8)
    smooth = smooth_gray((128, 128), seed=3)
    noise = np.random.default_rng(4).integers(0, 256, (128, 128), dtype=np.uint8)

    ratios = [
        compression_ratio(image, method=method) for image in (constant, smooth, noise)
    ]

    assert 0 < ratios[0] < ratios[1] < ratios[2]
    assert ratios[0] < 0.02


def test_lossless_compression_of_noise_cannot_shrink_it() -> None:
    # Uniform random bytes have 8 bits of entropy per byte: no lossless coder
    # can store them in fewer bytes on average (Shannon's source coding theorem).
    noise = np.random.default_rng(5).integers(0, 256, (256, 256), dtype=np.uint8)

    assert compression_ratio(noise, method="deflate") >= 1.0


def test_jpeg_ratio_counts_the_scan_not_the_headers() -> None:
    # A constant 8 x 8 block codes in a few bytes; the headers and tables alone
    # are over 300 bytes, which would give a ratio above 4.
    assert compression_ratio(np.zeros((8, 8), dtype=np.uint8)) < 0.2


def test_compression_ratio_is_nearly_rotation_invariant() -> None:
    image = smooth_gray((256, 320), seed=6, sigma=2)

    ratio = compression_ratio(image)
    rotated = compression_ratio(np.rot90(image).copy())

    assert rotated == pytest.approx(ratio, rel=0.05)


def test_compression_ratio_needs_one_jpeg_block() -> None:
    # Sizes are width x height, as everywhere else: 7 rows of 100 pixels.
    with pytest.raises(InsufficientDataError, match="a 100x7 px image .* 8x8"):
        compression_ratio(np.zeros((7, 100), dtype=np.uint8))

    assert compression_ratio(np.zeros((1, 1), dtype=np.uint8), method="deflate") > 0


def test_compression_ratio_rejects_bad_arguments() -> None:
    image = np.zeros((16, 16), dtype=np.uint8)

    with pytest.raises(ValueError, match="method"):
        compression_ratio(image, method="zip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality"):
        compression_ratio(image, quality=100)
    with pytest.raises(ValueError, match="level"):
        compression_ratio(image, method="deflate", level=0)
    with pytest.raises(ValueError, match="uint8"):
        compression_ratio(image.astype(np.float64))
    assert math.isfinite(compression_ratio(image))
