"""ProM3E speed on this machine: grid inference and stage-2 training, default 27.3 M model.

Inference: batch 4096, context sat + loc + env visible (the map setting), measured side by side
for (a) the engine's path: one shared visibility (masked tokens dropped), decoding only the image
embedding that the SDM layer needs; (b) the same batch through the per-sample key-padding path;
(c) decoding all six modalities. Training: batch 1024, `prom3e` masking, AdamW steps.

    python benchmarks/model.py [--device cpu|cuda] [--batch 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import median_seconds

from prom3e_geo.model import ProM3E, visibility
from prom3e_geo.runtime import autocast, resolve_device
from prom3e_geo.train.losses import ProM3ELoss
from prom3e_geo.train.masking import make_masking

CONTEXT = [1, 2, 3]  # sat, loc, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--train-batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = ProM3E().to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device {device}, threads {torch.get_num_threads()}, {n_params:,} parameters")

    x = F.normalize(torch.randn(args.batch, 6, 512, device=device), dim=-1)
    shared = visibility(args.batch, CONTEXT, device=device)
    padded = shared.clone()
    padded[0, 0] = True  # one sample differs: forces the key-padding path for the whole batch

    def engine():
        with torch.inference_mode(), autocast(device):
            mu, logvar, _ = model.encode(x, shared)
            model.decode(mu, [0])

    def padding():
        with torch.inference_mode(), autocast(device):
            mu, logvar, _ = model.encode(x, padded)
            model.decode(mu, [0])

    def all_six():
        with torch.inference_mode(), autocast(device):
            model(x, shared)

    rows = []
    for name, fn in (
        ("shared visibility, decode image", engine),
        ("key-padding path, decode image", padding),
        ("shared visibility, decode all 6", all_six),
    ):
        seconds = median_seconds(fn, args.repeats, device)
        rows.append((name, args.batch / seconds))
    base = rows[0][1]
    print(f"inference, batch {args.batch}, context sat+loc+env:")
    for name, rate in rows:
        print(f"  {name:34s} {rate:10,.0f} cells/s   ({rate / base:.2f}x)")

    model.train()
    loss_fn = ProM3ELoss()
    masking = make_masking("prom3e", seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    xb = F.normalize(torch.randn(args.train_batch, 6, 512, device=device), dim=-1)
    present = [0, 1, 2, 3, 4, 5]

    def step():
        visible = masking.sample(args.train_batch, present).to(device)
        with autocast(device):
            mu, logvar, _ = model.encode(xb, visible)
            recon = model.decode(model.sample_latent(mu, logvar, 1), present)
        loss = loss_fn(
            recon.float(),
            xb,
            visible,
            present,
            mu.float(),
            logvar.float(),
            model.negative_scale,
            model.negative_shift,
        )
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()

    seconds = median_seconds(step, args.repeats, device)
    rate = args.train_batch / seconds
    print(f"training, batch {args.train_batch}: {rate:,.0f} samples/s ({seconds:.2f} s/step)")


if __name__ == "__main__":
    main()
