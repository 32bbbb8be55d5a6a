"""Zarr stores on a grid: the embedding store, the patch cache and its reader."""
