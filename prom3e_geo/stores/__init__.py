"""Zarr stores on a grid (embedding store, patch cache and its reader), on a disk or object storage."""
