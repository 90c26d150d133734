"""Stored images: the model, decoding pixels, endpoints."""
