"""The species-distribution map's scoring modes (`layers.sdm` computes them). A module of its
own so that naming them (in a spec, a CLI choice) does not load the model stack."""

MODES = ("hybrid", "recon")
DEFAULT_MODE = "hybrid"
