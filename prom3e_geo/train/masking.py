"""Which modalities a training sample sees: the masking strategies, chosen by name in a recipe.

Every strategy returns a visibility mask [B, M] over the modalities present in the data (absent
ones, e.g. audio in a dataset without sound, are never visible). All but `prom3e` first draw a
vector of masking probabilities p in [0, 1]^K per sample (K = present modalities) and then mask
modality m with probability p_m; they differ in the distribution of p:

| name                | p                                                                      |
| ------------------- | ---------------------------------------------------------------------- |
| `prom3e`            | (released default) per batch: 1 visible modality with prob 0.9, else 2 |
| `constant`          | p_m = q                                                                |
| `uniform`           | p_m = u for all m, u ~ U(0, 1) per sample                              |
| `dirichlet`         | p ~ Dir(alpha * 1_K)                                                   |
| `dropout`           | p_m ~ Bernoulli(q): whole modalities dropped                           |
| `opm`               | p_m ~ Bernoulli(q (1 + lam tanh(rho_m - 1)) [rho_m > 1]), rho from s_m |
| `uniform_hypercube` | p_m ~ U(0, 1) independently                                            |
| `beta_hypercube`    | MIAM with all imbalance weights w_m = 1                                |
| `miam`              | mixture of product Betas over hypercube corners, w_m from s_m and d_m  |

MIAM (Zbinden et al., ICLR 2026): pick a corner c in {0,1}^K with the single-token corner weights
(w(0...0) = 1/2, w(1...1) = 0, the rest share 1/2 equally; `single_token=False` gives 1/4, 1/4 and
the rest), then p_m ~ Beta(1, kappa / w_m) where c_m = 0 ("keep": mass near 0) and
p_m ~ Beta(kappa * w_m, 1) where c_m = 1 ("mask": mass near 1). The imbalance weight is
w_m = (rho_s,m / rho_d,m)^lam, where s_m is the validation score of the model fed modality m alone
and d_m = |s_m(t) - s_m(t - window)| / window its rate of change, each divided by its geometric
mean over modalities (eps is added to both first). A strong, stable modality gets w > 1 and is
masked more; a weak or improving one gets w < 1 and is masked less.

Reconstruction assumptions, configurable because the paper leaves them unclear: `window`
(default 3 epochs, the paper's epsilon) is the span of the finite difference for d_m, and
`warmup` (default 10 epochs, the paper's phi) is the number of epochs during which w stays 1.

Every strategy guarantees at least one visible modality per sample: when a draw masks everything,
one present modality chosen uniformly at random is made visible.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, get_type_hints

import numpy as np
import torch
from pydantic import ValidationError, create_model

from prom3e_geo.errors import InputError
from prom3e_geo.recipes import RecipeModel, describe_error
from prom3e_geo.registry import Registry


class MaskingStrategy(ABC):
    """Base class: subclasses define the distribution of masking probabilities."""

    name: ClassVar[str] = ""

    def __init__(self, num_modalities: int = 6, seed: int = 0) -> None:
        self.num_modalities = num_modalities
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        """Masking probabilities [n, K] for the K present modalities (indices `present`)."""

    def sample(self, batch: int, present: list[int] | np.ndarray) -> torch.Tensor:
        """A visibility mask [batch, M] (True = visible)."""
        present = np.asarray(present, dtype=int)
        p = self.probabilities(batch, present)
        visible_k = self.rng.random(p.shape) >= p
        return self._expand(self._at_least_one(visible_k), present)

    def update(self, scores: np.ndarray, epoch: int) -> None:  # noqa: B027 (optional hook)
        """Receive per-modality validation scores [M] (NaN where absent) after an epoch.

        Static strategies ignore them; adaptive ones (opm, miam) override this.
        """

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    # -- helpers ----------------------------------------------------------------------------------
    def _at_least_one(self, visible: np.ndarray) -> np.ndarray:
        none = ~visible.any(axis=1)
        if none.any():
            rows = np.flatnonzero(none)
            visible[rows, self.rng.integers(0, visible.shape[1], rows.size)] = True
        return visible

    def _expand(self, visible_k: np.ndarray, present: np.ndarray) -> torch.Tensor:
        full = np.zeros((visible_k.shape[0], self.num_modalities), dtype=bool)
        full[:, present] = visible_k
        return torch.from_numpy(full)


class ProM3EMasking(MaskingStrategy):
    """The released default: one visible set per batch, 1 modality (p = 0.9) or 2."""

    name = "prom3e"

    def __init__(self, num_modalities: int = 6, seed: int = 0, p_single: float = 0.9) -> None:
        super().__init__(num_modalities, seed)
        self.p_single = p_single

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        k = 1 if self.rng.random() < self.p_single or present.size < 2 else 2
        chosen = self.rng.choice(present.size, size=k, replace=False)
        p = np.ones((n, present.size))
        p[:, chosen] = 0.0  # the same visible set for the whole batch
        return p


class ConstantMasking(MaskingStrategy):
    name = "constant"

    def __init__(self, num_modalities: int = 6, seed: int = 0, q: float = 0.75) -> None:
        super().__init__(num_modalities, seed)
        self.q = q

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        return np.full((n, present.size), self.q)


class UniformMasking(MaskingStrategy):
    name = "uniform"

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        return np.repeat(self.rng.random((n, 1)), present.size, axis=1)


class DirichletMasking(MaskingStrategy):
    name = "dirichlet"

    def __init__(self, num_modalities: int = 6, seed: int = 0, alpha: float = 1.0) -> None:
        super().__init__(num_modalities, seed)
        self.alpha = alpha

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        return self.rng.dirichlet(np.full(present.size, self.alpha), size=n)


class DropoutMasking(MaskingStrategy):
    name = "dropout"

    def __init__(self, num_modalities: int = 6, seed: int = 0, q: float = 0.1) -> None:
        super().__init__(num_modalities, seed)
        self.q = q

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        return (self.rng.random((n, present.size)) < self.q).astype(float)


class OpmMasking(MaskingStrategy):
    """On-the-fly prediction modulation: drop dominant modalities (rho_m > 1) more often."""

    name = "opm"

    def __init__(
        self, num_modalities: int = 6, seed: int = 0, q: float = 0.5, lam: float = 0.5
    ) -> None:
        super().__init__(num_modalities, seed)
        self.q, self.lam = q, lam
        self.scores: np.ndarray | None = None

    def drop_probability(self, present: np.ndarray) -> np.ndarray:
        if self.scores is None:
            return np.full(present.size, self.q)
        s = np.nan_to_num(self.scores[present], nan=1.0) + 1e-3
        k = s.size
        rho = (s[:, None] / s[None, :]).sum(axis=1) - 1.0  # sum over j != m of s_m / s_j
        rho = rho / max(k - 1, 1)
        return np.asarray(self.q * (1 + self.lam * np.tanh(rho - 1)) * (rho > 1))

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        return (self.rng.random((n, present.size)) < self.drop_probability(present)).astype(float)

    def update(self, scores: np.ndarray, epoch: int) -> None:
        self.scores = np.asarray(scores, dtype=float)

    def state_dict(self) -> dict[str, Any]:
        scores = None if self.scores is None else self.scores.tolist()
        return {**super().state_dict(), "scores": scores}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.scores = (
            None if state.get("scores") is None else np.asarray(state["scores"], dtype=float)
        )


class UniformHypercubeMasking(MaskingStrategy):
    name = "uniform_hypercube"

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        return self.rng.random((n, present.size))


def corner_weights(k: int, single_token: bool = True, priority_mass: float = 0.25) -> np.ndarray:
    """Weights of the 2^k hypercube corners, corner i = binary digits of i (first = modality 0).

    Single-token modalities: the all-masked corner is meaningless, so its mass goes to all-kept:
    w(0...0) = 2q, w(1...1) = 0; otherwise q at both. The other corners share 1 - 2q equally.
    """
    n = 2**k
    if k == 1:
        return np.array([1.0, 0.0]) if single_token else np.array([0.5, 0.5])
    weights = np.full(n, (1 - 2 * priority_mass) / (n - 2))
    weights[0], weights[-1] = (
        (2 * priority_mass, 0.0) if single_token else (priority_mass, priority_mass)
    )
    return weights


class MiamMasking(MaskingStrategy):
    """Modality-imbalance-aware masking (see the module docstring)."""

    name = "miam"

    def __init__(
        self,
        num_modalities: int = 6,
        seed: int = 0,
        kappa: float = 10.0,
        lam: float = 1.0,
        window: int = 3,
        warmup: int = 10,
        eps: float = 1e-3,
        single_token: bool = True,
        dynamic: bool = True,
    ) -> None:
        super().__init__(num_modalities, seed)
        if kappa <= 0 or window < 1:
            raise ValueError("kappa must be > 0 and window >= 1")
        self.kappa, self.lam, self.window, self.warmup = kappa, lam, window, warmup
        self.eps, self.single_token, self.dynamic = eps, single_token, dynamic
        self.history: list[list[float]] = []  # per-epoch score vectors [M]
        self.epoch = 0

    def imbalance_weights(self, present: np.ndarray) -> np.ndarray:
        """w_m for the present modalities (all 1 before warm-up or without enough history)."""
        if not self.dynamic or self.epoch < self.warmup or len(self.history) <= self.window:
            return np.ones(present.size)
        now = np.asarray(self.history[-1], dtype=float)[present]
        then = np.asarray(self.history[-1 - self.window], dtype=float)[present]
        if np.isnan(now).any() or np.isnan(then).any():
            return np.ones(present.size)
        s = now + self.eps
        d = np.abs(now - then) / self.window + self.eps
        rho_s = s / _geometric_mean(s)
        rho_d = d / _geometric_mean(d)
        return np.asarray((rho_s / rho_d) ** self.lam)

    def probabilities(self, n: int, present: np.ndarray) -> np.ndarray:
        k = present.size
        weights = corner_weights(k, self.single_token)
        corners = self.rng.choice(2**k, size=n, p=weights)
        bits = (corners[:, None] >> np.arange(k - 1, -1, -1)) & 1  # first digit = modality 0
        w = self.imbalance_weights(present)
        u = self.rng.random((n, k))
        mask_p = u ** (1.0 / (self.kappa * w))  # Beta(kappa w, 1), mass near 1
        keep_p = 1.0 - u ** (w / self.kappa)  # Beta(1, kappa / w), mass near 0
        return np.where(bits == 1, mask_p, keep_p)

    def update(self, scores: np.ndarray, epoch: int) -> None:
        self.history.append([float(v) for v in scores])
        self.epoch = epoch + 1

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": self.history, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.history = [list(h) for h in state["history"]]
        self.epoch = int(state["epoch"])


class BetaHypercubeMasking(MiamMasking):
    """MIAM's corner-priority Beta mixture without the imbalance correction (w = 1)."""

    name = "beta_hypercube"

    def __init__(
        self, num_modalities: int = 6, seed: int = 0, kappa: float = 10.0, single_token: bool = True
    ) -> None:
        super().__init__(
            num_modalities, seed, kappa=kappa, single_token=single_token, dynamic=False
        )


def _geometric_mean(values: np.ndarray) -> float:
    return math.exp(float(np.mean(np.log(values))))


# built-in strategies are declared as entry points (group `prom3e_geo.masking`) by their `name`
STRATEGIES: Registry[type[MaskingStrategy]] = Registry("prom3e_geo.masking", "masking strategy")


def make_masking(
    name: str, num_modalities: int = 6, seed: int = 0, **params: object
) -> MaskingStrategy:
    """Build a strategy by name; unknown names, parameters or parameter types are input errors."""
    cls = STRATEGIES.get(name)
    options = masking_options(cls, params, f"masking strategy {name!r}")
    try:
        return cls(num_modalities=num_modalities, seed=seed, **options)
    except ValueError as exc:
        raise InputError(f"masking strategy {name!r}: {exc}") from None


def check_masking(masking: Mapping[str, object], source: str) -> None:
    """A recipe's `masking` section checked against its strategy's signature (names and value
    types), so that a bad parameter is refused before any data is read."""
    params = dict(masking)
    cls = STRATEGIES.get(str(params.pop("strategy")))
    masking_options(cls, params, f"recipe {source}: masking")


def masking_options(
    cls: type[MaskingStrategy], params: Mapping[str, object], where: str
) -> dict[str, object]:
    """`params` validated against the keyword parameters of `cls` (their annotations and
    defaults, as a strict recipe model); errors say `where`."""
    hints = get_type_hints(cls.__init__)
    fields: dict[str, Any] = {
        p.name: (hints.get(p.name, object), p.default)
        for p in inspect.signature(cls).parameters.values()
        if p.name not in ("num_modalities", "seed")
    }
    model = create_model(f"{cls.__name__}Options", __base__=RecipeModel, **fields)
    try:
        checked = model.model_validate(dict(params))
    except ValidationError as exc:
        raise InputError(f"{where}: {describe_error(model, exc)}") from None
    return {k: getattr(checked, k) for k in params}
