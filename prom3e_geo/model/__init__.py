"""The ProM3E model and its checkpoint I/O."""

from prom3e_geo.model.prom3e import MODALITIES, ProM3E, ProM3EConfig, ProM3EOutput, visibility

__all__ = ["MODALITIES", "ProM3E", "ProM3EConfig", "ProM3EOutput", "visibility"]
