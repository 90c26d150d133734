"""Colour statistics of sRGB images: CIELAB lightness and chroma, colourfulness,
hue distribution and the share of warm hues.

All functions take 8-bit sRGB pixels (or CIELAB values computed from them with
`rgb_to_lab`) and assume the sRGB viewing conditions: D65 white, 2-degree
observer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from image_tagger.science.metrics.fractal import InsufficientDataError, _describe

__all__ = [
    "CHROMA_THRESHOLD",
    "WARM_HUES",
    "chroma_hue",
    "chromatic_fraction",
    "colorfulness",
    "hue_entropy",
    "lightness_statistics",
    "luma",
    "rgb_to_lab",
    "warm_fraction",
]

#: Default chroma C*ab above which a pixel counts as chromatic (not grey).
CHROMA_THRESHOLD: float = 10.0

#: Default warm hue sector [start, end) of CIELAB hue angles h_ab, in degrees.
WARM_HUES: tuple[float, float] = (-20.0, 115.0)


def _srgb_to_linear_table() -> np.ndarray:
    """Linear-light value of each 8-bit sRGB code (IEC 61966-2-1)."""
    v = np.arange(256, dtype=np.float64) / 255.0
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


_SRGB_TO_LINEAR = _srgb_to_linear_table()


def luma(rgb: np.ndarray) -> np.ndarray:
    """Grey image of an sRGB image: Rec. 601 luma.

    ``Y' = 0.299 R' + 0.587 G' + 0.114 B'`` on the gamma-encoded 8-bit values,
    rounded to the nearest integer [1]_ (the weights Pillow's ``convert("L")``
    and OpenCV's ``COLOR_RGB2GRAY`` use).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
        sRGB pixels.

    Returns
    -------
    gray : (M, N) ndarray of uint8
        Luma, 0..255.

    References
    ----------
    .. [1] ITU-R Recommendation BT.601-7, "Studio encoding parameters of digital
       television for standard 4:3 and wide-screen 16:9 aspect ratios," 2011.
    """
    _check_rgb(rgb)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB coordinates of sRGB pixels (D65 white).

    Each 8-bit value is linearised with the sRGB transfer function [1]_,
    converted to CIE XYZ with the sRGB primaries and then to CIELAB relative to
    the D65 white [2]_.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
        sRGB pixels.

    Returns
    -------
    lab : (M, N, 3) ndarray of float32
        ``L*`` in 0..100, ``a*`` and ``b*`` roughly in -128..128.

    Notes
    -----
    The linearisation uses an exact 256-entry table; OpenCV's linear-RGB to
    CIELAB conversion does the rest. The result agrees with
    ``skimage.color.rgb2lab`` to within 0.05 in every coordinate and is about
    thirty times faster.

    References
    ----------
    .. [1] IEC 61966-2-1:1999, "Multimedia systems and equipment - Colour
       measurement and management - Part 2-1: Default RGB colour space - sRGB."
    .. [2] CIE 015:2004, *Colorimetry*, 3rd ed. Vienna: Commission
       Internationale de l'Eclairage, 2004.
    """
    _check_rgb(rgb)

    linear = cv2.LUT(np.ascontiguousarray(rgb), _SRGB_TO_LINEAR)
    return cv2.cvtColor(linear, cv2.COLOR_LRGB2Lab, dst=linear)


def lightness_statistics(lab: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of CIELAB lightness ``L*``.

    Parameters
    ----------
    lab : (M, N, 3) ndarray of float
        CIELAB pixels (see `rgb_to_lab`).

    Returns
    -------
    mean : float
        Mean ``L*``, in 0..100 (0 black, 100 white) [1]_.
    std : float
        Population standard deviation of ``L*``, in 0..50: a global measure of
        lightness contrast.

    References
    ----------
    .. [1] CIE 015:2004, *Colorimetry*, 3rd ed. Vienna: Commission
       Internationale de l'Eclairage, 2004.
    """
    _check_lab(lab)

    lightness = np.ascontiguousarray(lab[..., 0], dtype=np.float32)

    # Two passes (mean, then spread about it): exact 0 for a uniform image,
    # where the one-pass E[L^2] - E[L]^2 leaves rounding noise.
    mean = cv2.mean(lightness)[0]
    _, std = cv2.meanStdDev(cv2.subtract(lightness, mean))
    return float(mean), float(std[0, 0])


def chroma_hue(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB chroma ``C*ab`` and hue angle ``h_ab`` of each pixel.

    ``C*ab = sqrt(a*^2 + b*^2)`` is the distance from the grey axis and
    ``h_ab = atan2(b*, a*)`` the direction around it [1]_: about 40 degrees for
    sRGB red, 103 for yellow, 136 for green, 306 for blue.

    Parameters
    ----------
    lab : (M, N, 3) ndarray of float
        CIELAB pixels (see `rgb_to_lab`).

    Returns
    -------
    chroma : (M, N) ndarray of float32
        ``C*ab``, >= 0: 0 for greys, about 134 for sRGB blue.
    hue : (M, N) ndarray of float32
        ``h_ab`` in degrees, in [0, 360); 0 where the chroma is 0.

    References
    ----------
    .. [1] CIE 015:2004, *Colorimetry*, 3rd ed. Vienna: Commission
       Internationale de l'Eclairage, 2004.
    """
    _check_lab(lab)

    # a* and b* as planes, then OpenCV's polar conversion (angles accurate to
    # about 0.01 degree).
    a = np.empty(lab.shape[:2], dtype=np.float32)
    b = np.empty_like(a)
    cv2.mixChannels([np.asarray(lab, dtype=np.float32)], [a, b], [1, 0, 2, 1])
    chroma, hue = cv2.cartToPolar(a, b, angleInDegrees=True)
    hue[hue >= 360] = 0  # guard the half-open range against rounding
    return chroma, hue


def chromatic_fraction(
    chroma: np.ndarray, *, chroma_threshold: float = CHROMA_THRESHOLD
) -> float:
    """Share of pixels whose chroma ``C*ab`` exceeds ``chroma_threshold``.

    Parameters
    ----------
    chroma : (M, N) ndarray of float
        CIELAB chroma (see `chroma_hue`).
    chroma_threshold : float, optional
        Chroma above which a pixel is chromatic rather than grey. The default,
        10, is about four just-noticeable differences (Delta E*ab of about 2.3
        [1]_) away from the grey axis.

    Returns
    -------
    fraction : float
        In [0, 1].

    References
    ----------
    .. [1] M. Mahy, L. Van Eycken and A. Oosterlinck, "Evaluation of uniform
       color spaces developed after the adoption of CIELAB and CIELUV," Color
       Research & Application, vol. 19, no. 2, pp. 105-121, 1994.
    """
    _check_plane(chroma, "chroma")

    return float(np.count_nonzero(chroma > chroma_threshold) / chroma.size)


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness ``M``.

    With the opponent components ``rg = R - G`` and ``yb = (R + G) / 2 - B``
    of the 8-bit sRGB values (signed, not clipped) [1]_::

        M = sqrt(std(rg)**2 + std(yb)**2) + 0.3 * sqrt(mean(rg)**2 + mean(yb)**2)

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
        sRGB pixels.

    Returns
    -------
    colorfulness : float
        ``M`` in 8-bit units, >= 0: 0 for any grey image; on the authors'
        scale [1]_ about 15 is "slightly", 33 "moderately", 45 "averagely",
        59 "quite", 82 "highly" and 109 "extremely colourful".

    References
    ----------
    .. [1] D. Hasler and S. Suesstrunk, "Measuring colourfulness in natural
       images," in *Proc. SPIE 5007, Human Vision and Electronic Imaging VIII*,
       2003, pp. 87-95. :DOI:`10.1117/12.477378`
    """
    _check_rgb(rgb)

    # Exact integer opponent components: rg and 2 * yb = R + G - 2 B.
    red, green, blue = cv2.split(np.ascontiguousarray(rgb))
    rg = cv2.subtract(red, green, dtype=cv2.CV_16S)
    yb2 = cv2.subtract(
        cv2.add(red, green, dtype=cv2.CV_16S),
        cv2.add(blue, blue, dtype=cv2.CV_16S),
        dtype=cv2.CV_16S,
    )

    # Population mean and standard deviation of each, halving 2 * yb.
    rg_mean, rg_std = _integer_moments(rg)
    yb_mean, yb_std = (value / 2 for value in _integer_moments(yb2))
    return float(np.hypot(rg_std, yb_std) + 0.3 * np.hypot(rg_mean, yb_mean))


def _integer_moments(values: np.ndarray) -> tuple[float, float]:
    """Mean and population standard deviation of integers, from exact sums.

    The sum and the sum of squares of 16-bit integers are exact in double
    precision, and ``n * sum(x^2) - sum(x)^2`` is formed in Python integers, so
    the spread of a uniform image is exactly 0.
    """
    count = values.size
    total = round(cv2.sumElems(values)[0])
    squares = round(cv2.norm(values, cv2.NORM_L2SQR))
    variance = (count * squares - total * total) / (count * count)
    return total / count, math.sqrt(variance)


def hue_entropy(
    chroma: np.ndarray,
    hue: np.ndarray,
    *,
    chroma_threshold: float = CHROMA_THRESHOLD,
    bins: int = 12,
) -> float:
    """Shannon entropy of the hue distribution of the chromatic pixels.

    The CIELAB hue angles of the pixels with chroma above ``chroma_threshold``
    are counted in ``bins`` equal sectors starting at 0 degrees, and the
    entropy of those proportions is taken [1]_, [2]_.

    Parameters
    ----------
    chroma, hue : (M, N) ndarray of float
        CIELAB chroma and hue angle in degrees, in [0, 360) (see `chroma_hue`).
    chroma_threshold : float, optional
        Chroma above which a pixel is chromatic (see `chromatic_fraction`).
    bins : int, optional
        Number of hue sectors, 1..255; 12 gives sectors of 30 degrees.

    Returns
    -------
    entropy : float
        In bits, in ``[0, log2(bins)]``: 0 when every chromatic pixel has its
        hue in one sector, ``log2(bins)`` when all sectors are equally common.

    Raises
    ------
    InsufficientDataError
        If no pixel is chromatic.

    References
    ----------
    .. [1] C. E. Shannon, "A mathematical theory of communication," Bell System
       Technical Journal, vol. 27, no. 3, pp. 379-423, 1948.
       :DOI:`10.1002/j.1538-7305.1948.tb01338.x`
    .. [2] CIE 015:2004, *Colorimetry*, 3rd ed. Vienna: Commission
       Internationale de l'Eclairage, 2004.
    """
    if not 1 <= bins <= 255:
        raise ValueError(f"bins must be between 1 and 255; got {bins}")
    chromatic = _chromatic_mask(chroma, hue, chroma_threshold)

    # Hue sectors of the chromatic pixels, counted in one pass.
    counts = cv2.calcHist(
        [np.asarray(hue, dtype=np.float32)],
        [0],
        chromatic.view(np.uint8),
        [bins],
        [0, 360],
    )
    counts = counts.ravel().astype(np.float64)

    p = counts[counts > 0] / counts.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))


def warm_fraction(
    chroma: np.ndarray,
    hue: np.ndarray,
    *,
    chroma_threshold: float = CHROMA_THRESHOLD,
    warm_hues: tuple[float, float] = WARM_HUES,
) -> float:
    """Share of warm hues among the chromatic pixels.

    A pixel is chromatic when its chroma ``C*ab`` exceeds ``chroma_threshold``;
    greys, whites and blacks count neither as warm nor as cool. A chromatic
    pixel is warm when its CIELAB hue angle ``h_ab`` lies in the sector
    ``[warm_hues[0], warm_hues[1])``, counter-clockwise, in degrees.

    The default sector, -20 to 115 degrees, is the warm half of Itten's colour
    circle, red-violet through red and orange to yellow [1]_: its ends lie
    halfway between the CIELAB hues of the sRGB colours (255, 0, 128)
    red-violet (3 degrees) and (128, 0, 255) violet (312 degrees), and between
    (255, 255, 0) yellow (103 degrees) and (128, 255, 0) yellow-green
    (128 degrees), rounded to 5 degrees. Its centre, 47.5 degrees, is close to
    the warmest hue, 50 degrees, of the warm-cool model of Ou et al. [2]_.

    Parameters
    ----------
    chroma, hue : (M, N) ndarray of float
        CIELAB chroma and hue angle in degrees, in [0, 360) (see `chroma_hue`).
    chroma_threshold : float, optional
        Chroma above which a pixel is chromatic (see `chromatic_fraction`).
    warm_hues : tuple of float, optional
        Start and end of the warm sector of hue angles, in degrees; the start
        may be negative.

    Returns
    -------
    fraction : float
        In [0, 1]; ``1 - fraction`` is the share of cool hues.

    Raises
    ------
    InsufficientDataError
        If no pixel is chromatic.

    References
    ----------
    .. [1] J. Itten, *The Art of Color*. New York: Reinhold, 1961.
    .. [2] L.-C. Ou, M. R. Luo, A. Woodcock and A. Wright, "A study of colour
       emotion and colour preference. Part I: Colour emotions for single
       colours," Color Research & Application, vol. 29, no. 3, pp. 232-240,
       2004. :DOI:`10.1002/col.20010`
    """
    start, end = warm_hues
    if not 0 < end - start < 360:
        raise ValueError(
            "warm_hues must be (start, end) with 0 < end - start < 360 degrees; "
            f"got {warm_hues}"
        )
    chromatic = _chromatic_mask(chroma, hue, chroma_threshold)

    # The sector in [0, 360), possibly wrapping through 0.
    after_start = hue >= start % 360.0
    before_end = hue < end % 360.0
    wraps = start % 360.0 >= end % 360.0
    warm = (after_start | before_end) if wraps else (after_start & before_end)

    return float(np.count_nonzero(warm & chromatic) / np.count_nonzero(chromatic))


def _chromatic_mask(
    chroma: np.ndarray, hue: np.ndarray, chroma_threshold: float
) -> np.ndarray:
    _check_plane(chroma, "chroma")
    _check_plane(hue, "hue")
    if chroma.shape != hue.shape:
        raise ValueError(
            f"chroma and hue must have the same shape; got {chroma.shape} and "
            f"{hue.shape}"
        )

    chromatic = chroma > chroma_threshold
    if not chromatic.any():
        raise InsufficientDataError(
            f"no chromatic pixel (every pixel has chroma C*ab <= {chroma_threshold})"
        )
    return chromatic


def _check_plane(values: np.ndarray, name: str) -> None:
    if not isinstance(values, np.ndarray) or values.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array; got {_describe(values)}; compute it "
            "with `chroma_hue`"
        )
    if values.size == 0:
        raise ValueError(f"{name} is empty (shape {values.shape})")


def _check_rgb(rgb: np.ndarray) -> None:
    _check_pixels(
        rgb,
        "rgb",
        accepts=lambda dtype: dtype == np.uint8,
        expected="uint8 array of sRGB pixels",
        hint="decode images with `image_tagger.images.decode.load_analysis_image`",
    )


def _check_lab(lab: np.ndarray) -> None:
    _check_pixels(
        lab,
        "lab",
        accepts=lambda dtype: np.issubdtype(dtype, np.floating),
        expected="float array of CIELAB pixels",
        hint="convert sRGB pixels with `rgb_to_lab`",
    )


def _check_pixels(
    values: np.ndarray,
    name: str,
    *,
    accepts: Callable[[np.dtype], bool],
    expected: str,
    hint: str,
) -> None:
    """An (M, N, 3) array of an accepted type, not empty; else a ValueError."""
    if not (
        isinstance(values, np.ndarray)
        and values.ndim == 3
        and values.shape[2] == 3
        and accepts(values.dtype)
    ):
        raise ValueError(
            f"{name} must be an (M, N, 3) {expected}; got {_describe(values)}; {hint}"
        )
    if values.size == 0:
        raise ValueError(f"{name} is empty (shape {values.shape})")
