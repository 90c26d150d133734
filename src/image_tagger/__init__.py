"""Image Tagger: batches of building photos, cited visual metrics and VLM ratings."""

__version__ = "0.1.0"
