"""Grey-level co-occurrence (Haralick) texture statistics.

A grey-level co-occurrence matrix (GLCM) counts how often grey level ``i``
occurs next to grey level ``j`` at a given distance and direction. Statistics of
the normalised matrix describe texture: how much neighbouring grey levels differ
(contrast, homogeneity), how few pairs dominate (energy, entropy) and how
linearly they depend on each other (correlation).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from image_tagger.science.metrics.fractal import (
    InsufficientDataError,
    _check_gray_uint8,
    _describe,
)

__all__ = [
    "ANGLES",
    "FEATURES",
    "cooccurrence_features",
    "cooccurrence_matrix",
    "quantize",
    "texture_features",
]

#: Directions of the neighbour, in degrees counter-clockwise from the +column axis.
ANGLES: tuple[int, ...] = (0, 45, 90, 135)

#: Names of the statistics returned by `cooccurrence_features`.
FEATURES: tuple[str, ...] = (
    "contrast",
    "homogeneity",
    "energy",
    "correlation",
    "entropy",
)

# Row and column step of the neighbour at distance 1, for each angle (rows grow
# downwards, so 45 degrees is up and to the right).
_STEPS: dict[int, tuple[int, int]] = {
    0: (0, 1),
    45: (-1, 1),
    90: (-1, 0),
    135: (-1, -1),
}

# cv2.calcHist counts in float32, exact up to 2**24 pairs per matrix.
_CALCHIST_MAX_PAIRS = 2**24


def quantize(gray: np.ndarray, *, levels: int = 32) -> np.ndarray:
    """Reduce 8-bit grey levels to ``levels`` equal-width bins.

    Parameters
    ----------
    gray : (M, N) ndarray of uint8
        Grey levels 0..255.
    levels : int, optional
        Number of output levels, 2..256.

    Returns
    -------
    quantized : (M, N) ndarray of uint8
        ``floor(gray * levels / 256)``, in ``0 .. levels - 1``.

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for
       image classification," IEEE Transactions on Systems, Man, and
       Cybernetics, vol. SMC-3, no. 6, pp. 610-621, 1973 (grey tones are
       quantised to a few levels before the co-occurrence matrices are
       built). :DOI:`10.1109/TSMC.1973.4309314`
    """
    _check_gray_uint8(gray, "gray")
    _check_levels(levels)

    if levels == 256:
        return gray
    return ((gray.astype(np.uint16) * levels) >> 8).astype(np.uint8)


def cooccurrence_matrix(
    image: np.ndarray,
    *,
    distance: int,
    angle: int,
    levels: int,
    symmetric: bool = True,
    normed: bool = True,
) -> np.ndarray:
    """Grey-level co-occurrence matrix for one distance and direction.

    Entry ``(i, j)`` counts the pixel pairs in which the reference pixel has
    level ``i`` and its neighbour, ``distance`` pixels away in direction
    ``angle``, has level ``j`` [1]_. Diagonal neighbours are ``distance`` rows
    and ``distance`` columns away, as in [1]_ (``skimage.feature.graycomatrix``
    instead rounds ``distance`` times the sine and cosine, so the two agree on
    diagonals only at distance 1). Pairs whose neighbour falls outside the image
    are not counted.

    Parameters
    ----------
    image : (M, N) ndarray of uint8
        Quantised grey levels in ``0 .. levels - 1`` (see `quantize`).
    distance : int
        Distance to the neighbour, in pixels (>= 1).
    angle : {0, 45, 90, 135}
        Direction to the neighbour, in degrees counter-clockwise from the
        direction of increasing column index.
    levels : int
        Number of grey levels, 2..256.
    symmetric : bool, optional
        Count each pair in both orders (the matrix plus its transpose), so that
        the directions ``angle`` and ``angle + 180`` are the same.
    normed : bool, optional
        Divide by the number of counted pairs, so the entries sum to 1.

    Returns
    -------
    matrix : (levels, levels) ndarray
        Pair probabilities (float64) if ``normed``, else counts (int64).

    Raises
    ------
    InsufficientDataError
        If the image is too small to hold a single pair at this distance.

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for
       image classification," IEEE Transactions on Systems, Man, and
       Cybernetics, vol. SMC-3, no. 6, pp. 610-621, 1973.
       :DOI:`10.1109/TSMC.1973.4309314`
    """
    _check_levels(levels)
    _check_levels_image(image, levels)
    if angle not in _STEPS:
        raise ValueError(f"angle must be one of {ANGLES} degrees; got {angle}")
    if isinstance(distance, bool) or not isinstance(distance, int | np.integer):
        raise ValueError(f"distance must be a whole number of pixels; got {distance!r}")
    if distance < 1:
        raise ValueError(f"distance must be >= 1 pixel; got {distance}")

    # Reference pixels and their neighbours as two aligned views.
    rows, cols = image.shape
    dr, dc = (step * distance for step in _STEPS[angle])
    if abs(dr) >= rows or abs(dc) >= cols:
        raise InsufficientDataError(
            f"a {cols}x{rows} px image has no pixel pairs {distance} px apart at "
            f"{angle} degrees; it needs at least {distance + 1} px on each side"
        )
    reference = image[max(0, -dr) : rows - max(0, dr), max(0, -dc) : cols - max(0, dc)]
    neighbour = image[max(0, dr) : rows - max(0, -dr), max(0, dc) : cols - max(0, -dc)]

    # Count each (reference level, neighbour level) pair.
    counts = _pair_counts(reference, neighbour, levels)

    if symmetric:
        counts = counts + counts.T
    if normed:
        return counts / counts.sum()
    return counts


def cooccurrence_features(matrix: np.ndarray) -> dict[str, float]:
    """Haralick statistics of a normalised co-occurrence matrix.

    With ``p(i, j)`` the pair probabilities, ``mu`` and ``sigma`` the mean and
    standard deviation of the row (``i``) and column (``j``) marginals [1]_:

    - contrast ``= sum (i - j)**2 p(i, j)``, in ``[0, (levels - 1)**2]``
      (Haralick's f2);
    - homogeneity ``= sum p(i, j) / (1 + (i - j)**2)``, in ``(0, 1]``, 1 when
      all pairs have equal levels (Haralick's inverse difference moment, f5);
    - energy ``= sum p(i, j)**2``, in ``(0, 1]``, 1 for a single grey level
      (Haralick's angular second moment, f1; the square of
      ``skimage.feature.graycoprops``' "energy");
    - correlation ``= sum (i - mu_i)(j - mu_j) p(i, j) / (sigma_i sigma_j)``, in
      ``[-1, 1]`` (f3); NaN when a marginal has no spread (one grey level);
    - entropy ``= -sum p(i, j) log2 p(i, j)``, in bits, in
      ``[0, 2 log2(levels)]`` (f9, in base 2 rather than base e).

    Parameters
    ----------
    matrix : (L, L) ndarray of float
        Non-negative pair probabilities summing to 1 (see `cooccurrence_matrix`).

    Returns
    -------
    features : dict of str to float
        One value per name in `FEATURES`.

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for
       image classification," IEEE Transactions on Systems, Man, and
       Cybernetics, vol. SMC-3, no. 6, pp. 610-621, 1973.
       :DOI:`10.1109/TSMC.1973.4309314`
    """
    p = np.asarray(matrix, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] < 1:
        raise ValueError(f"matrix must be square and 2-D; got shape {p.shape}")
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(
            "matrix must hold probabilities (non-negative, summing to 1); "
            "pass normed=True to cooccurrence_matrix"
        )

    # Level indices and their squared differences.
    i = np.arange(p.shape[0], dtype=np.float64)[:, np.newaxis]
    j = i.T
    squared_difference = (i - j) ** 2

    # Marginal means and spreads for the correlation.
    mu_i = float((i * p).sum())
    mu_j = float((j * p).sum())
    sigma_i = float(np.sqrt((((i - mu_i) ** 2) * p).sum()))
    sigma_j = float(np.sqrt((((j - mu_j) ** 2) * p).sum()))
    covariance = float(((i - mu_i) * (j - mu_j) * p).sum())
    spread = sigma_i * sigma_j
    correlation = covariance / spread if spread > 0 else float("nan")

    nonzero = p[p > 0]
    return {
        "contrast": float((squared_difference * p).sum()),
        "homogeneity": float((p / (1.0 + squared_difference)).sum()),
        "energy": float((p * p).sum()),
        "correlation": float(np.clip(correlation, -1.0, 1.0)),
        "entropy": float(-(nonzero * np.log2(nonzero)).sum()),
    }


def texture_features(
    gray: np.ndarray,
    *,
    distance: int,
    levels: int = 32,
    angles: Sequence[int] = ANGLES,
) -> dict[str, float]:
    """Haralick statistics at one distance, averaged over directions.

    The 8-bit image is quantised to ``levels`` grey levels (see `quantize`); a
    symmetric, normalised co-occurrence matrix is built for each angle (see
    `cooccurrence_matrix`) and each statistic of `cooccurrence_features` is
    averaged over the angles. Over the four default directions the average is
    unchanged by rotating the image by 90 degrees or mirroring it, as proposed
    in [1]_.

    Parameters
    ----------
    gray : (M, N) ndarray of uint8
        Grey levels 0..255.
    distance : int
        Distance between the pixels of a pair, in pixels.
    levels : int, optional
        Number of grey levels after quantisation, 2..256.
    angles : sequence of {0, 45, 90, 135}, optional
        Directions, in degrees.

    Returns
    -------
    features : dict of str to float
        Mean of each statistic in `FEATURES` over the directions; correlation
        is NaN when it is undefined in any direction (a single grey level).

    Raises
    ------
    InsufficientDataError
        If the image is smaller than ``distance + 1`` pixels on a side needed
        by one of the directions.

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for
       image classification," IEEE Transactions on Systems, Man, and
       Cybernetics, vol. SMC-3, no. 6, pp. 610-621, 1973.
       :DOI:`10.1109/TSMC.1973.4309314`
    """
    if len(angles) == 0:
        raise ValueError("angles must name at least one direction")

    # Quantise once, then one matrix and one set of statistics per direction.
    quantized = quantize(gray, levels=levels)
    per_angle = [
        cooccurrence_features(
            cooccurrence_matrix(quantized, distance=distance, angle=a, levels=levels)
        )
        for a in angles
    ]

    return {name: float(np.mean([f[name] for f in per_angle])) for name in FEATURES}


def _pair_counts(
    reference: np.ndarray, neighbour: np.ndarray, levels: int
) -> np.ndarray:
    """2-D histogram of aligned level pairs as an int64 (levels, levels) array."""
    if reference.size < _CALCHIST_MAX_PAIRS:
        # OpenCV reads the strided views in place; twice as fast as bincount.
        ranges = [0, levels, 0, levels]
        counts = cv2.calcHist(
            [reference, neighbour], [0, 1], None, [levels] * 2, ranges
        )
        return counts.astype(np.int64)

    pair_index = reference.astype(np.intp) * levels + neighbour
    counts = np.bincount(pair_index.ravel(), minlength=levels * levels)
    return counts.reshape(levels, levels).astype(np.int64)


def _check_levels(levels: int) -> None:
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256; got {levels}")


def _check_levels_image(image: np.ndarray, levels: int) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(
            "image must be a 2-D uint8 array of quantised grey levels; got "
            f"{_describe(image)}; quantise 8-bit grey images with `quantize`"
        )
    if image.size and int(image.max()) >= levels:
        raise ValueError(
            f"image has grey level {int(image.max())} but levels={levels}; "
            f"quantise it with `quantize(gray, levels={levels})`"
        )
