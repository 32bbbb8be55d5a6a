"""Bundled data files (the CONUS boundary and its provenance)."""
