"""Modality encoders: raw inputs -> the 512-d L2-normalised embeddings ProM3E consumes.

`build_encoder(modality, spec)` builds one from a spec: a local path (the usual case), a
registered name (`geoclip` for the location weights shipped in the geoclip wheel), or a Hugging
Face hub id when the machine is online. See each module for the architecture, weights layout and
preprocessing.
"""

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.encoders.registry import build_encoder

__all__ = ["Encoder", "build_encoder"]
