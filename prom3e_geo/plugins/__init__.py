"""Plug-ins shipped with prom3e-geo; each registers its kinds through entry points."""
