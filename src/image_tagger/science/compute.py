"""Every science metric of one image, as a flat mapping of stable keys to numbers.

`analyze_file` is what workers run: decode once at the analysis resolution
(`image_tagger.images.decode`), then `compute_metrics`. Values are plain floats
or None; every None comes with a note saying why the metric has no value for
this image (too small, no edges, no chromatic pixel, ...), never a made-up
number.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from image_tagger.images.decode import (
    ANALYSIS_MAX_SIDE,
    RESAMPLING,
    load_analysis_image,
)
from image_tagger.science.metrics import color, complexity, fractal, texture
from image_tagger.science.metrics.fractal import InsufficientDataError

__all__ = [
    "METRIC_DEFINITIONS",
    "METRIC_KEYS",
    "PIPELINE_PARAMS",
    "MetricsResult",
    "analyze_file",
    "compute_metrics",
]

_CANNY = {"sigma": 1.0, "low_threshold": 25.5, "high_threshold": 51.0}
_FRACTAL = {"min_box": 2}
_TEXTURE = {"levels": 32, "fine_distance": 1, "coarse_distance": 8}
_COLOR = {"chroma_threshold": color.CHROMA_THRESHOLD, "warm_hues": color.WARM_HUES}
_HUE_BINS = 12
_COMPRESSION = {"method": "jpeg", "quality": 75}

#: Every parameter the metric values depend on; stored with each result.
PIPELINE_PARAMS: dict[str, object] = {
    "metrics_version": 2,
    "analysis": {
        "max_side_px": ANALYSIS_MAX_SIDE,
        "decode": "Pillow; JPEG DCT scaling to >= target, EXIF orientation, "
        "ICC to sRGB, alpha on white",
        "resampling": RESAMPLING,
        "gray": "Rec. 601 luma, 8 bit",
    },
    "edges": {
        "method": "Canny (OpenCV), Gaussian smoothing, 3x3 Sobel, L2 magnitude",
        "sigma_px": _CANNY["sigma"],
        "low_threshold": _CANNY["low_threshold"],
        "high_threshold": _CANNY["high_threshold"],
    },
    "fractal": {
        "set": "Canny edge map",
        "box_sizes_px": "powers of two from 2 to a quarter of the shorter side",
        "min_box_px": _FRACTAL["min_box"],
        "counted": "occupied boxes",
        "fit": "least squares of log N against log 1/s",
    },
    "texture": {
        "grey_levels": _TEXTURE["levels"],
        "fine_distance_px": _TEXTURE["fine_distance"],
        "coarse_distance_px": _TEXTURE["coarse_distance"],
        "angles_deg": list(texture.ANGLES),
        "matrix": "symmetric, normalised; statistics averaged over angles",
        "energy": "angular second moment (sum of p^2)",
        "entropy_base": 2,
    },
    "color": {
        "space": "CIELAB, D65, from sRGB",
        "chroma_threshold": _COLOR["chroma_threshold"],
        "warm_hue_range_deg": list(_COLOR["warm_hues"]),
        "hue_bins": _HUE_BINS,
        "colorfulness": "Hasler and Suesstrunk 2003, 8-bit sRGB",
    },
    "complexity": {
        "entropy": "256-bin grey histogram, bits",
        "edge_density": "share of Canny edge pixels",
        "compression": "JPEG entropy-coded bytes / raw grey bytes",
        "compression_quality": _COMPRESSION["quality"],
    },
}

#: The stable metric keys, in a fixed order (for tables and exports).
METRIC_KEYS: tuple[str, ...] = (
    "fractal.dimension",
    "fractal.r2",
    *(f"texture.fine.{name}" for name in texture.FEATURES),
    *(f"texture.coarse.{name}" for name in texture.FEATURES),
    "color.lightness_mean",
    "color.lightness_std",
    "color.chroma_mean",
    "color.colorfulness",
    "color.warm_fraction",
    "color.chromatic_fraction",
    "color.hue_entropy_bits",
    "complexity.entropy_bits",
    "complexity.edge_density",
    "complexity.compression_ratio",
)

#: What each key measures, with its unit or range (details in the metric modules).
METRIC_DEFINITIONS: dict[str, str] = {
    "fractal.dimension": "box-counting dimension of the Canny edge map, occupied "
    "boxes of 2 px to a quarter of the shorter side; 0..2",
    "fractal.r2": "R^2 of the least-squares log-log box-counting fit; 0..1",
    **{
        f"texture.{scale}.{name}": f"GLCM {meaning} at {distance} px, mean of 4 "
        f"directions, {_TEXTURE['levels']} grey levels; {value_range}"
        for scale, distance in (
            ("fine", _TEXTURE["fine_distance"]),
            ("coarse", _TEXTURE["coarse_distance"]),
        )
        for name, meaning, value_range in (
            ("contrast", "contrast, sum (i-j)^2 p", "0..961"),
            ("homogeneity", "homogeneity, sum p / (1 + (i-j)^2)", "0..1"),
            ("energy", "energy (angular second moment), sum p^2", "0..1"),
            ("correlation", "correlation", "-1..1"),
            ("entropy", "entropy, -sum p log2 p", "0..10 bits"),
        )
    },
    "color.lightness_mean": "mean CIELAB L*; 0..100",
    "color.lightness_std": "standard deviation of CIELAB L*; 0..50",
    "color.chroma_mean": "mean CIELAB chroma C*ab; >= 0",
    "color.colorfulness": "Hasler-Suesstrunk colourfulness M with signed rg = R-G, "
    "yb = (R+G)/2-B, 8-bit sRGB units; >= 0, 0 for grey",
    "color.warm_fraction": "share of chromatic pixels (C*ab > 10) with hue angle "
    "in [-20, 115) degrees; 0..1",
    "color.chromatic_fraction": "share of pixels with C*ab > 10; 0..1",
    "color.hue_entropy_bits": "entropy of the 12-sector hue histogram of chromatic "
    "pixels; 0..log2(12) = 3.58 bits",
    "complexity.entropy_bits": "entropy of the 256-bin grey histogram; 0..8 bits",
    "complexity.edge_density": "share of Canny edge pixels; 0..1",
    "complexity.compression_ratio": "JPEG (quality 75) scan bytes over raw grey "
    "bytes; > 0, about 0.02..0.4 for photographs",
}

# Why a value that came out as NaN has no value.
_NAN_REASONS = {
    "fractal.r2": "undefined: the box count is the same at every box size",
    "texture.fine.correlation": "undefined: the image has a single grey level",
    "texture.coarse.correlation": "undefined: the image has a single grey level",
}


@dataclass(frozen=True)
class MetricsResult:
    """The metrics of one image.

    Attributes
    ----------
    metrics : dict of str to float or None
        One entry per key of `METRIC_KEYS`; plain Python floats, never NaN or
        infinite.
    notes : dict of str to str
        For each key whose value is None, the reason.
    shape : tuple of int
        ``(height, width)`` of the analysed image, in pixels.
    """

    metrics: dict[str, float | None]
    notes: dict[str, str] = field(default_factory=dict)
    shape: tuple[int, int] = (0, 0)


def analyze_file(path: str | os.PathLike[str]) -> MetricsResult:
    """Decode an image file at the analysis resolution and compute its metrics.

    Raises `image_tagger.images.decode.ImageDecodeError` if the file cannot be
    decoded.
    """
    return compute_metrics(load_analysis_image(path, max_side=ANALYSIS_MAX_SIDE))


def compute_metrics(rgb: np.ndarray) -> MetricsResult:
    """Every metric of an sRGB image, with a reason for each missing value.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
        sRGB pixels, normally from `load_analysis_image` (long side at most
        `ANALYSIS_MAX_SIDE`).

    Returns
    -------
    MetricsResult
        Values for every key of `METRIC_KEYS` (see `PIPELINE_PARAMS` for the
        parameters and the metric modules for definitions, units and ranges).
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            "rgb must be an (M, N, 3) uint8 array of sRGB pixels; decode files "
            "with `load_analysis_image`"
        )
    if rgb.dtype != np.uint8 or rgb.size == 0:
        raise ValueError(f"rgb must be non-empty uint8; got {rgb.dtype}, {rgb.shape}")

    # Shared intermediates: grey, edges and CIELAB are computed once.
    gray = color.luma(rgb)
    edges = fractal.edge_map(gray, **_CANNY)
    lab = color.rgb_to_lab(rgb)

    values: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for keys, step in _steps(rgb, gray, edges, lab):
        _collect(values, notes, keys, step)

    ordered = {key: values[key] for key in METRIC_KEYS}
    return MetricsResult(metrics=ordered, notes=notes, shape=gray.shape)


def _steps(
    rgb: np.ndarray, gray: np.ndarray, edges: np.ndarray, lab: np.ndarray
) -> list[tuple[tuple[str, ...], Callable[[], tuple[float, ...]]]]:
    """Each group of keys with the computation of its values, in key order."""
    chroma, hue = color.chroma_hue(lab)
    threshold = {"chroma_threshold": _COLOR["chroma_threshold"]}
    return [
        (
            ("fractal.dimension", "fractal.r2"),
            lambda: fractal.box_counting_dimension(edges, **_FRACTAL),
        ),
        (_texture_keys("fine"), lambda: _texture(gray, _TEXTURE["fine_distance"])),
        (_texture_keys("coarse"), lambda: _texture(gray, _TEXTURE["coarse_distance"])),
        (
            ("color.lightness_mean", "color.lightness_std"),
            lambda: color.lightness_statistics(lab),
        ),
        (("color.chroma_mean",), lambda: (chroma.mean(dtype=np.float64),)),
        (("color.colorfulness",), lambda: (color.colorfulness(rgb),)),
        (
            ("color.warm_fraction",),
            lambda: (color.warm_fraction(chroma, hue, **_COLOR),),
        ),
        (
            ("color.chromatic_fraction",),
            lambda: (color.chromatic_fraction(chroma, **threshold),),
        ),
        (
            ("color.hue_entropy_bits",),
            lambda: (color.hue_entropy(chroma, hue, **threshold, bins=_HUE_BINS),),
        ),
        (("complexity.entropy_bits",), lambda: (complexity.gray_entropy(gray),)),
        (("complexity.edge_density",), lambda: (complexity.edge_density(edges),)),
        (
            ("complexity.compression_ratio",),
            lambda: (complexity.compression_ratio(gray, **_COMPRESSION),),
        ),
    ]


def _texture_keys(scale: str) -> tuple[str, ...]:
    return tuple(f"texture.{scale}.{name}" for name in texture.FEATURES)


def _texture(gray: np.ndarray, distance: int) -> tuple[float, ...]:
    features = texture.texture_features(
        gray, distance=distance, levels=_TEXTURE["levels"]
    )
    return tuple(features[name] for name in texture.FEATURES)


def _collect(
    values: dict[str, float | None],
    notes: dict[str, str],
    keys: tuple[str, ...],
    compute: Callable[[], tuple[float, ...]],
) -> None:
    """Store ``compute()`` under ``keys``; None with a note where it has no value."""
    try:
        results = compute()
    except InsufficientDataError as exc:
        for key in keys:
            values[key] = None
            notes[key] = str(exc)
        return

    for key, value in zip(keys, results, strict=True):
        value = float(value)
        if math.isfinite(value):
            values[key] = value
        else:
            values[key] = None
            notes[key] = _NAN_REASONS.get(key, "not a finite number")
