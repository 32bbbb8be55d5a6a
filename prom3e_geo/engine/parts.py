"""What a model preset provides: `PipelineParts` (the presets build them, the pipeline uses them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.engine.cells import Environment
from prom3e_geo.model.prom3e import ProM3E

# the patches TaxaBind's satellite tower was trained on: 256 px over 1,024 m (iSatNat's
# download script: +-512 m, 256 x 256; docs/s2cloudless.md)
TAXABIND_PATCH = {"size": 256, "resolution": 4.0}


@dataclass
class PipelineParts:
    """What a model preset provides."""

    model: ProM3E
    weights_sha256: str  # recorded in the manifest: a store is never finished by other weights
    encoders: dict[str, Encoder]  # built; the pipeline builds the others from `encoder_specs`
    encoder_specs: dict[str, str]  # modality -> the spec that rebuilds it, for the manifest
    environment: Environment | None = None
    source: str | None = None  # default imagery source spec
    synthetic: bool = False  # outputs are tagged as made from synthetic data
    coverage: tuple[float, float, float, float] | None = None  # lon/lat box the model knows
    patch: dict[str, float] | None = (
        None  # the imagery its sat encoder was trained on: size (px), resolution
    )
    preprocessing: dict[str, object] = field(
        default_factory=dict
    )  # modality -> the encoder's preprocessing
    origins: dict[str, str] = field(default_factory=dict)  # part -> ORG/NAME@COMMIT (hub parts)
    hint: str | None = None  # what to do when its hub files are missing offline
    # files that travel with the model, by kind: `novelty` (a NoveltyReference of its training
    # data), `calibration` (an ErrorCalibration); the uncertainty layers use them by default
    companions: dict[str, str] = field(default_factory=dict)
