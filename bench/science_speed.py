"""Decode plus every metric, against Pillow's full-resolution decode, on one core.

For each sample photo: the time of `load_analysis_image` followed by
`compute_metrics` (what an analysis process does per image, less the
thumbnail), and the time Pillow takes to decode the same file at full
resolution, both measured in this run, in turns, as the best of several rounds; then
their ratio, and the median ratio over the photos. The bar is a median of at
most 2.0.

Photos: the sample photos, or the folder IMAGE_TAGGER_BENCH_PHOTOS names
(`bench.photos`). Run ``python -m bench.science_speed [max_side ...]`` to
compare analysis resolutions: with several, it also prints how closely each
metric ranks the photos at each resolution as at the first.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# One core: no BLAS or OpenMP threads (set before numpy is imported).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.photos import sample_photos  # noqa: E402
from image_tagger.images.decode import ANALYSIS_MAX_SIDE, load_analysis_image  # noqa: E402
from image_tagger.science.compute import METRIC_KEYS, compute_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 9
MAX_MEDIAN_RATIO = 2.0


def best_seconds(*functions: Callable[[], object]) -> list[float]:
    """Best time of each function over `REPEATS` rounds, run in turns.

    Taking turns exposes every function to the same load from other processes
    on a shared machine; the best of several rounds is the least disturbed.
    """
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(REPEATS):
        for function, spent in zip(functions, times, strict=True):
            started = time.perf_counter()
            function()
            spent.append(time.perf_counter() - started)
    return [min(spent) for spent in times]


def full_decode(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def analyse(path: Path, max_side: int) -> None:
    compute_metrics(load_analysis_image(path, max_side=max_side))


def measure(max_side: int = ANALYSIS_MAX_SIDE) -> float:
    """Print the per-photo table at ``max_side``; return the median ratio."""
    photos = sample_photos()
    analyse(photos[0], max_side)  # warm imports and caches

    print(
        f"\nDecode + every metric at {max_side} px vs Pillow full-resolution "
        f"decode, one core, best of {REPEATS}"
    )
    print(f"{'photo':22} {'size':>11} {'full ms':>8} {'ours ms':>8} {'ratio':>6}")
    ratios = []
    for path in photos:
        with Image.open(path) as image:
            size = "{}x{}".format(*image.size)
        full, ours = best_seconds(
            lambda p=path: full_decode(p), lambda p=path: analyse(p, max_side)
        )
        ratios.append(ours / full)
        print(
            f"{path.name[:22]:22} {size:>11} {full * 1e3:8.1f} {ours * 1e3:8.1f} "
            f"{ours / full:6.2f}"
        )

    median = statistics.median(ratios)
    verdict = "ok" if median <= MAX_MEDIAN_RATIO else "ABOVE THE BAR"
    print(
        f"median ratio over {len(ratios)} photos: {median:.2f} "
        f"(bar {MAX_MEDIAN_RATIO:.1f}: {verdict})"
    )
    return median


def rank_agreement(sides: list[int]) -> None:
    """Spearman rank correlation over the photos of each metric at each side
    with its value at the first side: how much a resolution reorders photos."""
    photos = sample_photos()
    values = {side: [analyse_values(path, side) for path in photos] for side in sides}
    reference = values[sides[0]]

    print(
        f"\nRank correlation over {len(photos)} photos with the values at {sides[0]} px"
    )
    print(f"{'key':30} " + " ".join(f"{side:>7}" for side in sides[1:]))
    for key in METRIC_KEYS:
        row = []
        for side in sides[1:]:
            pairs = [
                (a[key], b[key])
                for a, b in zip(reference, values[side], strict=True)
                if a[key] is not None and b[key] is not None
            ]
            row.append(f"{_spearman(pairs):7.3f}")
        print(f"{key:30} " + " ".join(row))


def analyse_values(path: Path, max_side: int) -> dict[str, float | None]:
    return compute_metrics(load_analysis_image(path, max_side=max_side)).metrics


def _spearman(pairs: list[tuple[float, float]]) -> float:
    """Spearman rank correlation; tied values are ranked in order of appearance."""
    ranks = [np.argsort(np.argsort(column)) for column in zip(*pairs, strict=True)]
    return float(np.corrcoef(*ranks)[0, 1])


def main(sides: list[int] | None = None) -> None:
    cv2.setNumThreads(1)
    for max_side in sides or [ANALYSIS_MAX_SIDE]:
        measure(max_side)
    if sides and len(sides) > 1:
        rank_agreement(sides)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]])
