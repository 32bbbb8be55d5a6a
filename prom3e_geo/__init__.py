"""prom3e-geo: continental maps from the ProM3E multimodal ecological embedding model."""

__version__ = "0.1.0"
