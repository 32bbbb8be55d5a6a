"""Stage-2 training: ProM3E on all-paired embeddings, with exact resume.

Each step draws one source dataset (in proportion to its weight; the released model mixes the
all-modality MultiNat file and the audio-less iNaturalist file 50/50), a batch from it, and a
visibility mask from the masking strategy; the loss is `ProM3ELoss`. AdamW and cosine annealing
with warm restarts (stepped per epoch, period `t0_epochs`) follow the paper.

After every epoch: validation loss (fixed masks, deterministic latent), cross-modal retrieval
(each present modality alone reconstructs every other one, recall@1/5 ranked within blocks of
`val_batch`), the per-modality unimodal scores s_m handed to adaptive masking (MIAM, OPM), then
`metrics.csv`, `loss.png`, `last.safetensors` / `best.safetensors` and `state.pt`.

`state.pt` holds everything a resumed run needs to continue exactly as if it had never stopped:
weights, optimizer, scheduler, grad scaler, masking state, and the data, latent-noise and torch
RNG states. It is replaced atomically at the end of each epoch, so a run killed mid-epoch resumes
from the last completed one and reaches the same weights.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from prom3e_geo.errors import InputError
from prom3e_geo.evaluate.retrieval import retrieval_ranks
from prom3e_geo.model.checkpoint import save_prom3e
from prom3e_geo.model.prom3e import MODALITIES, ProM3E, visibility
from prom3e_geo.recipes import TrainRecipe
from prom3e_geo.runtime import autocast, resolve_device
from prom3e_geo.train.data import PairedEmbeddings
from prom3e_geo.train.losses import ProM3ELoss
from prom3e_geo.train.masking import make_masking

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
Metrics = dict[str, float]  # one epoch's numbers: epoch, lr, losses, recalls, seconds
VAL_MASK_SEED = 20260323


class Stage2Trainer:
    """Trains one run into `out` (see the module docstring)."""

    def __init__(
        self,
        recipe: TrainRecipe,
        datasets: list[PairedEmbeddings],
        out: str | Path,
        device: str = "auto",
        weights: list[float] | None = None,
        on_epoch: Callable[[Metrics], None] | None = None,
    ) -> None:
        if not datasets:
            raise InputError("training needs at least one dataset")
        for data in datasets:
            if data.values.shape[-1] != recipe.model.input_dim:
                raise InputError(
                    f"{data.name}: embeddings are {data.values.shape[-1]}-d, "
                    f"the model expects {recipe.model.input_dim}-d"
                )
        self.recipe, self.out, self.on_epoch = recipe, Path(out), on_epoch
        self.device = resolve_device(device)
        t = recipe.train
        splits = [d.split(t.val_fraction, t.seed) for d in datasets]
        self.train_sets = [s[0] for s in splits]
        self.val_sets = [s[1] for s in splits if len(s[1]) >= 2]
        if any(len(d) < 2 for d in self.train_sets):
            raise InputError("every dataset needs at least 2 training samples after the split")
        w = np.asarray(weights or [1.0] * len(datasets), dtype=float)
        self.source_p = w / w.sum()
        n_train = sum(len(d) for d in self.train_sets)
        self.steps_per_epoch = max(1, n_train // t.batch_size)

        torch.manual_seed(t.seed)
        self.model = ProM3E(recipe.model).to(self.device)
        self.loss_fn = ProM3ELoss(recipe.loss.kind, recipe.loss.lambda_kl, recipe.loss.masked_only)
        params = dict(recipe.masking)
        self.masking = make_masking(
            str(params.pop("strategy")), recipe.model.num_modalities, t.seed, **params
        )
        o = recipe.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=o.t0_epochs, eta_min=o.eta_min
        )
        self.amp = t.amp if self.device.type == "cuda" else "none"  # CPU trains in float32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.data_rng = np.random.default_rng(t.seed + 1)
        self.noise = torch.Generator(device=self.device).manual_seed(t.seed + 2)
        self.epoch = 0
        self.history: list[Metrics] = []
        self.best_val = math.inf

    # -- public ---------------------------------------------------------------------------------
    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def fit(self, epochs: int | None = None, resume: bool = False) -> list[Metrics]:
        """Train until `epochs` (default: the recipe's) are complete; returns per-epoch metrics."""
        state_path = self.out / STATE_FILE
        if resume:
            if not state_path.exists():
                raise InputError(f"nothing to resume: {state_path} does not exist")
            self._load_state(state_path)
        elif state_path.exists():
            raise InputError(
                f"{self.out} already holds a run; "
                "pass --resume to continue it or choose another --out"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        total = epochs if epochs is not None else self.recipe.train.epochs
        if not resume:
            (self.out / "recipe.yaml").write_text(
                yaml.safe_dump(self.recipe.to_dict(), sort_keys=False)
            )
        while self.epoch < total:
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_metrics = self._train_epoch()
            self.scheduler.step()
            metrics = {"epoch": self.epoch + 1, "lr": lr, **train_metrics}
            metrics.update(self.validate())
            scores = np.full(self.recipe.model.num_modalities, np.nan)
            for i, modality in enumerate(MODALITIES[: len(scores)]):
                scores[i] = metrics.get(f"score_{modality}", np.nan)
            self.masking.update(scores, self.epoch)
            metrics["seconds"] = time.perf_counter() - started
            self.epoch += 1
            self.history.append(metrics)
            self._save(metrics)
            if self.on_epoch:
                self.on_epoch(metrics)
        return self.history

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Validation loss with fixed masks and mu as the latent; retrieval recall; scores s_m."""
        if not self.val_sets:
            return {}
        model = self.model.eval()
        masks = make_masking("prom3e", self.recipe.model.num_modalities, VAL_MASK_SEED)
        block = self.recipe.train.val_batch
        loss_sum = loss_n = 0.0
        hits: dict[tuple[int, int], list[float]] = {}  # (query, target) -> [hits@1, hits@5, n]
        for data in self.val_sets:
            for start in range(0, len(data), block):
                x = torch.from_numpy(data.values[start : start + block]).to(self.device)
                if x.shape[0] < 2:
                    continue
                visible = masks.sample(x.shape[0], data.present).to(self.device)
                with autocast(self.device, self.amp):
                    out = model(x, visible)
                loss = self.loss_fn(
                    out.recon.float(),
                    x,
                    visible,
                    data.present,
                    out.mu.float(),
                    out.logvar.float(),
                    model.negative_scale,
                    model.negative_shift,
                )
                loss_sum += float(loss.total) * x.shape[0]
                loss_n += x.shape[0]
                for q in data.present:
                    with autocast(self.device, self.amp):
                        recon = model(x, visibility(x.shape[0], [q], x.shape[1], self.device)).recon
                    for t in data.present:
                        if t == q:
                            continue
                        ranks = retrieval_ranks(recon[:, t], x[:, t])
                        acc = hits.setdefault((q, t), [0.0, 0.0, 0.0])
                        acc[0] += float((ranks <= 1).sum())
                        acc[1] += float((ranks <= 5).sum())
                        acc[2] += x.shape[0]
        metrics = {"val_loss": loss_sum / max(loss_n, 1)}
        if hits:
            metrics["val_recall@1"] = float(np.mean([h[0] / h[2] for h in hits.values()]))
            metrics["val_recall@5"] = float(np.mean([h[1] / h[2] for h in hits.values()]))
            for q in sorted({q for q, _ in hits}):
                pairs = [h for (qq, _), h in hits.items() if qq == q]
                metrics[f"score_{MODALITIES[q]}"] = float(np.mean([h[0] / h[2] for h in pairs]))
        return metrics

    # -- training -------------------------------------------------------------------------------
    def _train_epoch(self) -> dict[str, float]:
        model = self.model.train()
        t = self.recipe.train
        totals = torch.zeros(3, device=self.device)  # loss, recon, kl
        for _ in range(self.steps_per_epoch):
            data = self.train_sets[self.data_rng.choice(len(self.train_sets), p=self.source_p)]
            b = min(t.batch_size, len(data))
            idx = np.sort(self.data_rng.choice(len(data), size=b, replace=False))
            x = torch.from_numpy(data.values[idx])
            if self.device.type == "cuda":
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=True)
            visible = self.masking.sample(b, data.present).to(self.device, non_blocking=True)
            with autocast(self.device, self.amp):
                mu, logvar, _ = model.encode(x, visible)
                z = model.sample_latent(mu, logvar, 1, generator=self.noise)
                recon = model.decode(z, data.present)
            loss = self.loss_fn(
                recon.float(),
                x,
                visible,
                data.present,
                mu.float(),
                logvar.float(),
                model.negative_scale,
                model.negative_shift,
            )
            self.optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(self.scaler.scale(loss.total))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            totals += torch.stack([loss.total.detach(), loss.recon, loss.kl])
        mean = (totals / self.steps_per_epoch).tolist()
        return {"train_loss": mean[0], "train_recon": mean[1], "train_kl": mean[2]}

    # -- persistence ----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "recipe": self.recipe.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "masking": self.masking.state_dict(),
            "data_rng": self.data_rng.bit_generator.state,
            "noise": self.noise.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "best_val": self.best_val,
        }

    def _load_state(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # corrupt or foreign file
            raise InputError(f"cannot resume from {path}: {exc}") from None
        saved: dict[str, Any] = state["recipe"]
        now: dict[str, Any] = self.recipe.to_dict()
        saved_cmp = {**saved, "train": {**saved["train"], "epochs": None}, "data": None}
        now_cmp = {**now, "train": {**now["train"], "epochs": None}, "data": None}
        if saved_cmp != now_cmp:
            raise InputError(
                f"cannot resume {path.parent}: the recipe differs from the one it was started with"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.masking.load_state_dict(state["masking"])
        self.data_rng.bit_generator.state = state["data_rng"]
        self.noise.set_state(state["noise"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        self.epoch, self.history, self.best_val = (
            state["epoch"],
            state["history"],
            state["best_val"],
        )

    def _save(self, metrics: Metrics) -> None:
        tag = {"epoch": str(self.epoch)}
        save_prom3e(self.model, self.out / "last.safetensors", tag)
        val = metrics.get("val_loss", metrics["train_loss"])
        if val < self.best_val:
            self.best_val = val
            save_prom3e(self.model, self.out / "best.safetensors", tag)
        tmp = self.out / f".{STATE_FILE}.partial"
        torch.save(self._state(), tmp)
        os.replace(tmp, self.out / STATE_FILE)
        write_metrics(self.history, self.out / "metrics.csv")
        plot_losses(self.history, self.out / "loss.png")


def write_metrics(history: list[Metrics], path: Path) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def plot_losses(history: list[Metrics], path: Path) -> None:
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    if "val_loss" in history[-1]:
        ax.plot(epochs, [h.get("val_loss", np.nan) for h in history], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if "val_recall@1" in history[-1]:
        twin = ax.twinx()
        twin.plot(
            epochs, [h.get("val_recall@1", np.nan) for h in history], color="C2", label="recall@1"
        )
        twin.set_ylabel("cross-modal recall@1", color="C2")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
