"""Measurements of representation quality (retrieval, ...)."""
