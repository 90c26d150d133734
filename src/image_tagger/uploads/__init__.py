"""Uploads: streaming files to disk, checking them, content-addressed storage."""
