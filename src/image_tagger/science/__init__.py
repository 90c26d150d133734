"""The science pipeline: cited visual metrics of an image, and its stored results."""

from image_tagger.science.pipeline import (
    PIPELINE_VERSION,
    SciencePipeline,
    SciencePipelineConfig,
)

__all__ = ["PIPELINE_VERSION", "SciencePipeline", "SciencePipelineConfig"]
