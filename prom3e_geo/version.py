"""The package's version, recorded in every manifest and output (kept equal to pyproject's)."""

__version__ = "0.1.0"
