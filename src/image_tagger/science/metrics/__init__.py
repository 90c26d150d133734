"""Cited visual metrics of images: pure functions of pixel arrays.

One module per topic: `fractal` (edge maps, box-counting dimension), `texture`
(grey-level co-occurrence statistics), `color` (CIELAB statistics,
colourfulness, warm hues) and `complexity` (entropy, edge density,
compressibility). Functions take numpy arrays and return numbers; they do no
I/O and no logging. A valid input that holds too little to measure (an empty
edge map, no chromatic pixel, an image smaller than a distance) raises
`InsufficientDataError`, a `ValueError`.
"""

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
from image_tagger.science.metrics.complexity import (
    compression_ratio,
    edge_density,
    gray_entropy,
)
from image_tagger.science.metrics.fractal import (
    InsufficientDataError,
    box_counting_dimension,
    box_counts,
    box_sizes,
    edge_map,
)
from image_tagger.science.metrics.texture import (
    cooccurrence_features,
    cooccurrence_matrix,
    quantize,
    texture_features,
)

__all__ = [
    "InsufficientDataError",
    "box_counting_dimension",
    "box_counts",
    "box_sizes",
    "chroma_hue",
    "chromatic_fraction",
    "colorfulness",
    "compression_ratio",
    "cooccurrence_features",
    "cooccurrence_matrix",
    "edge_density",
    "edge_map",
    "gray_entropy",
    "hue_entropy",
    "lightness_statistics",
    "luma",
    "quantize",
    "rgb_to_lab",
    "texture_features",
    "warm_fraction",
]
