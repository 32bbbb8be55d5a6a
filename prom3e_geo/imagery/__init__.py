"""Sentinel-2 patch sources behind one protocol (see `base`)."""

from prom3e_geo.imagery.base import PatchBatch, PatchSource, open_source

__all__ = ["PatchBatch", "PatchSource", "open_source"]
