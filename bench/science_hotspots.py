"""The metric hot spots in scikit-image, OpenCV and numpy alone, on one core.

Each candidate computes the same quantity on the same sample photo, decoded at
the analysis resolution; the table gives the best of several runs in
milliseconds, and the implementation the pipeline uses is marked. This is how
the libraries in `image_tagger.science.metrics` were chosen.
"""

from __future__ import annotations

import io
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.photos import sample_photos  # noqa: E402
from image_tagger.images.decode import (  # noqa: E402
    ANALYSIS_MAX_SIDE,
    _fit,
    load_analysis_image,
)
from image_tagger.science.compute import compute_metrics  # noqa: E402
from image_tagger.science.metrics import (  # noqa: E402
    box_counting_dimension,
    chroma_hue,
    compression_ratio,
    edge_map,
    luma,
    rgb_to_lab,
    texture_features,
)

REPEATS = 15
CHOSEN = "*"

# ITU-R BT.709 / sRGB primaries, D65: linear RGB to XYZ, normalised by white.
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_WHITE_D65 = np.array([0.950456, 1.0, 1.088754])


def best_ms(function: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times) * 1e3


# --- CIELAB --------------------------------------------------------------


def lab_numpy(rgb: np.ndarray) -> np.ndarray:
    v = np.arange(256) / 255.0
    table = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    linear = table.astype(np.float32)[rgb]
    xyz = linear @ (_RGB_TO_XYZ / _WHITE_D65[:, None]).T.astype(np.float32)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lightness = 116 * f[..., 1] - 16
    return np.stack(
        [lightness, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


def lab_skimage(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb)


# --- Chroma and hue --------------------------------------------------------


def chroma_hue_numpy(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = lab[..., 1], lab[..., 2]
    return np.hypot(a, b), np.degrees(np.arctan2(b, a)) % 360


def chroma_hue_skimage(lab: np.ndarray) -> np.ndarray:
    from skimage.color import lab2lch

    return lab2lch(lab)


# --- Edges ---------------------------------------------------------------


def canny_skimage(gray: np.ndarray) -> np.ndarray:
    from skimage.feature import canny

    return canny(gray, sigma=1.0, low_threshold=25.5, high_threshold=51.0)


# --- Grey-level co-occurrence ----------------------------------------------


def glcm_skimage(gray: np.ndarray) -> None:
    from skimage.feature import graycomatrix, graycoprops

    quantized = (gray.astype(np.uint16) * 32 >> 8).astype(np.uint8)
    for distance in (1, 8):
        matrix = graycomatrix(
            quantized,
            [distance],
            [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
            levels=32,
            symmetric=True,
            normed=True,
        )
        for name in ("contrast", "homogeneity", "ASM", "correlation", "entropy"):
            graycoprops(matrix, name)


def glcm_numpy(gray: np.ndarray) -> None:
    quantized = (gray.astype(np.uint16) * 32 >> 8).astype(np.intp)
    rows, cols = quantized.shape
    for distance in (1, 8):
        for dr, dc in ((0, 1), (-1, 1), (-1, 0), (-1, -1)):
            dr, dc = dr * distance, dc * distance
            reference = quantized[
                max(0, -dr) : rows - max(0, dr), max(0, -dc) : cols - max(0, dc)
            ]
            neighbour = quantized[
                max(0, dr) : rows - max(0, -dr), max(0, dc) : cols - max(0, -dc)
            ]
            counts = np.bincount((reference * 32 + neighbour).ravel(), minlength=1024)
            counts = counts.reshape(32, 32)
            counts = counts + counts.T
            _ = counts / counts.sum()


def glcm_ours(gray: np.ndarray) -> None:
    for distance in (1, 8):
        texture_features(gray, distance=distance, levels=32)


# --- Box counting ----------------------------------------------------------


def box_counts_skimage(mask: np.ndarray) -> list[int]:
    from skimage.measure import block_reduce

    top = min(mask.shape) // 4
    sizes = [2**k for k in range(1, 31) if 2**k <= top]
    return [int(block_reduce(mask, (s, s), np.any).sum()) for s in sizes]


def box_counts_opencv(mask: np.ndarray) -> list[int]:
    # Halve repeatedly; an area average of 255s and 0s is non-zero if any is.
    top = min(mask.shape) // 4
    grid = mask.astype(np.uint8) * 255
    counts = []
    size = 1
    while size * 2 <= top:
        rows, cols = -(-grid.shape[0] // 2) * 2, -(-grid.shape[1] // 2) * 2
        padded = cv2.copyMakeBorder(
            grid, 0, rows - grid.shape[0], 0, cols - grid.shape[1], cv2.BORDER_CONSTANT
        )
        grid = cv2.resize(padded, (cols // 2, rows // 2), interpolation=cv2.INTER_AREA)
        grid[grid > 0] = 255
        size *= 2
        counts.append(cv2.countNonZero(grid))
    return counts


# --- Compression -----------------------------------------------------------


def jpeg_opencv(gray: np.ndarray) -> int:
    ok, data = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return len(data)


def png_opencv(gray: np.ndarray) -> int:
    ok, data = cv2.imencode(".png", gray)
    return len(data)


def deflate(gray: np.ndarray, level: int) -> int:
    return len(zlib.compress(gray.tobytes(), level))


# --- Decode resampling ----------------------------------------------------


def _reduced(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    factor = int(max(image.width / target[0], image.height / target[1]))
    return image.reduce(factor) if factor >= 2 else image


def _pillow(
    method: Image.Resampling,
) -> Callable[[Image.Image, tuple[int, int]], object]:
    return lambda image, target: np.asarray(
        _reduced(image, target).resize(target, method)
    )


def _opencv(method: int) -> Callable[[Image.Image, tuple[int, int]], object]:
    return lambda image, target: cv2.resize(
        np.asarray(_reduced(image, target)), target, interpolation=method
    )


RESAMPLERS: dict[str, tuple[str, Callable[[Image.Image, tuple[int, int]], object]]] = {
    "Pillow bicubic (antialiased)": (CHOSEN, _pillow(Image.Resampling.BICUBIC)),
    "Pillow bilinear (antialiased)": ("", _pillow(Image.Resampling.BILINEAR)),
    "Pillow Hamming (antialiased)": ("", _pillow(Image.Resampling.HAMMING)),
    "OpenCV INTER_AREA": ("", _opencv(cv2.INTER_AREA)),
    "OpenCV INTER_LINEAR": ("", _opencv(cv2.INTER_LINEAR)),
}


def decoded(path: Path) -> tuple[Image.Image, tuple[int, int]]:
    """The file decoded as for analysis up to the final resize, and the target.

    A JPEG is DCT-scaled to less than twice the target; other formats are
    decoded at full size and reduced by block means in each resampler.
    """
    with Image.open(path) as image:
        target = _fit(image.size, ANALYSIS_MAX_SIDE)
        image.draft("RGB", target)
        image.load()
        return image.convert("RGB"), target


def resampling_spread(path: Path) -> dict[str, dict[str, float]]:
    """Spread of size-sensitive metrics when one photo is saved at many sizes.

    The photo is resized (Lanczos) to long sides from 900 to 3840 px and saved
    as JPEG; each copy is decoded (some at exactly the analysis size by DCT
    scaling) and resampled to the analysis size by each resampler. Returns, per
    resampler and metric, the coefficient of variation over the copies in
    percent: 0 would mean the camera's resolution does not matter at all.
    """
    keys = (
        "texture.fine.contrast",
        "texture.coarse.contrast",
        "complexity.edge_density",
        "complexity.compression_ratio",
    )
    with Image.open(path) as image:
        source = image.convert("RGB")
    copies = []
    for side in (3840, 3000, 2560, 2000, 1600, 1300, 900):
        buffer = io.BytesIO()
        source.resize(_fit(source.size, side), Image.Resampling.LANCZOS).save(
            buffer, format="JPEG", quality=92
        )
        copies.append(buffer)

    spread = {}
    for name, (_, resample) in RESAMPLERS.items():
        values: dict[str, list[float]] = {key: [] for key in keys}
        for buffer in copies:
            buffer.seek(0)
            image, target = decoded(buffer)
            metrics = compute_metrics(np.ascontiguousarray(resample(image, target)))
            for key in keys:
                values[key].append(metrics.metrics[key])
        spread[name] = {
            key: float(np.std(v) / np.mean(v) * 100) for key, v in values.items()
        }
    return spread


def cases(rgb: np.ndarray) -> list[tuple[str, str, str, Callable[[], object]]]:
    gray = luma(rgb)
    edges = edge_map(gray)
    lab = rgb_to_lab(rgb)
    return [
        ("CIELAB", "scikit-image rgb2lab", "", lambda: lab_skimage(rgb)),
        ("CIELAB", "numpy (table, matrix, cbrt)", "", lambda: lab_numpy(rgb)),
        ("CIELAB", "OpenCV (table + LRGB2Lab)", CHOSEN, lambda: rgb_to_lab(rgb)),
        ("chroma, hue", "scikit-image lab2lch", "", lambda: chroma_hue_skimage(lab)),
        ("chroma, hue", "numpy hypot, arctan2", "", lambda: chroma_hue_numpy(lab)),
        ("chroma, hue", "OpenCV cartToPolar", CHOSEN, lambda: chroma_hue(lab)),
        ("Canny edges", "scikit-image canny", "", lambda: canny_skimage(gray)),
        ("Canny edges", "OpenCV GaussianBlur + Canny", CHOSEN, lambda: edge_map(gray)),
        ("GLCM, 2 x 4 matrices", "scikit-image", "", lambda: glcm_skimage(gray)),
        ("GLCM, 2 x 4 matrices", "numpy bincount", "", lambda: glcm_numpy(gray)),
        ("GLCM, 2 x 4 matrices", "OpenCV calcHist", CHOSEN, lambda: glcm_ours(gray)),
        (
            "box counting",
            "scikit-image block_reduce",
            "",
            lambda: box_counts_skimage(edges),
        ),
        ("box counting", "OpenCV INTER_AREA", "", lambda: box_counts_opencv(edges)),
        (
            "box counting",
            "numpy block OR",
            CHOSEN,
            lambda: box_counting_dimension(edges),
        ),
        ("compression", "zlib deflate, level 6", "", lambda: deflate(gray, 6)),
        ("compression", "zlib deflate, level 1", "", lambda: deflate(gray, 1)),
        ("compression", "OpenCV PNG", "", lambda: png_opencv(gray)),
        ("compression", "OpenCV JPEG q75", "", lambda: jpeg_opencv(gray)),
        (
            "compression",
            "Pillow JPEG q75 scan",
            CHOSEN,
            lambda: compression_ratio(gray),
        ),
    ]


def main() -> None:
    cv2.setNumThreads(1)
    photos = sample_photos()
    photo = photos[0]
    rgb = load_analysis_image(photo)
    print(
        f"\nMetric hot spots on {photo.name} at {rgb.shape[1]}x{rgb.shape[0]} px, "
        f"one core, best of {REPEATS} runs ({CHOSEN} = used by the pipeline)"
    )
    print(f"{'step':22} {'implementation':38} {'ms':>7}")
    for step, name, mark, function in cases(rgb):
        print(f"{step:22} {name + ' ' + mark:38} {best_ms(function):7.2f}")
    # The final filter, on a JPEG that DCT scaling does not bring exactly to
    # the analysis size (the block-mean reduction is common to all).
    resized = [p for p in photos if _needs_resize(p)] or photos
    image, target = decoded(resized[0])
    label = f"resample {resized[0].name}"[:22]
    for name, (mark, resample) in RESAMPLERS.items():
        time_ms = best_ms(lambda r=resample, i=image, t=target: r(i, t))
        print(f"{label:22} {name + ' ' + mark:38} {time_ms:7.2f}")

    # How much the camera's resolution still shows through each resampler.
    largest = max(photos, key=lambda p: _pixels(p))
    print(
        f"\nSpread over copies of {largest.name} saved at 900..3840 px "
        "(coefficient of variation, %)"
    )
    spread = resampling_spread(largest)
    keys = list(next(iter(spread.values())))
    print(f"{'resampler':38} " + " ".join(f"{key:>14.14}" for key in keys))
    for name, values in spread.items():
        mark = RESAMPLERS[name][0]
        row = " ".join(f"{values[key]:14.2f}" for key in keys)
        print(f"{name + ' ' + mark:38} {row}")


def _needs_resize(path: Path) -> bool:
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return False
    image, target = decoded(path)
    return image.size != target


def _pixels(path: Path) -> int:
    with Image.open(path) as image:
        return image.width * image.height


if __name__ == "__main__":
    main()
