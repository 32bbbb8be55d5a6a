"""The synthetic demo world, a plug-in: real CONUS geography, synthetic ecology, small models.

It registers, through entry points in `pyproject.toml`, the model preset `demo` (`preset`), the
encoder `demo`, the imagery source `demo` (`source`), the evaluation data `demo` and the CLI
group `prom3e-geo demo`. The core runs it only through those registries.
"""
