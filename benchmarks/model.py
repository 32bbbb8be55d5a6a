"""ProM3E speed on this machine: grid inference and stage-2 training, default 27.3 M model.

Inference: batch 4096, context sat + loc + env visible (the map setting), measured side by side
with the same weights for (a) the official formulation: every token through the block, every
decoder, noise off (the released forward); (b) our full path: every token through the block,
the image decoder only; (c) the readout-only path the maps use (`ProM3E.readout`: the last block
for [mu] and [logvar] only, the image decoder only); (d) (c) through the per-sample key-padding
path. Each rate is also given as a share of its FLOP limit: the path's matrix-product FLOPs per
cell against the best matmul rate measured here on the model's product shapes.
Training: batch 1024, `prom3e` masking, AdamW steps.

    python benchmarks/model.py [--device cpu|cuda] [--batch 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import median_seconds

from prom3e_geo.model import ProM3E, visibility
from prom3e_geo.runtime import autocast, resolve_device, resolve_precision
from prom3e_geo.train.losses import ProM3ELoss
from prom3e_geo.train.masking import make_masking

CONTEXT = [1, 2, 3]  # sat, loc, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--train-batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--precision", default="auto", help="auto (the maps' choice), bf16, float32"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    model = ProM3E().to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"device {device}, threads {torch.get_num_threads()}, precision {precision}, "
        f"{n_params:,} parameters"
    )

    x = F.normalize(torch.randn(args.batch, 6, 512, device=device), dim=-1)
    shared = visibility(args.batch, CONTEXT, device=device)
    padded = shared.clone()
    padded[0, 0] = True  # one sample differs: forces the key-padding path for the whole batch

    def official():
        with torch.inference_mode(), autocast(device, precision):
            model(x, shared)

    def full_path():
        with torch.inference_mode(), autocast(device, precision):
            mu, logvar, _ = model.encode(x, shared)
            model.decode(mu, [0])

    def readout():
        with torch.inference_mode(), autocast(device, precision):
            mu, logvar = model.readout(x, shared)
            model.decode(mu, [0])

    def readout_padded():
        with torch.inference_mode(), autocast(device, precision):
            mu, logvar = model.readout(x, padded)
            model.decode(mu, [0])

    with torch.inference_mode(), autocast(device, precision):
        mu, logvar, _ = model.encode(x, shared)
        mu_r, logvar_r = model.readout(x, shared)
    error = max((mu - mu_r).abs().max().item(), (logvar - logvar_r).abs().max().item())
    rate = matmul_rate(args.batch, device, precision)
    flops = path_flops(model.config, visible=len(CONTEXT))
    rows = []
    for name, fn, kind in (
        ("official formulation (all decoders)", official, "official"),
        ("our full path, decode image", full_path, "full"),
        ("readout only, decode image", readout, "readout"),
        ("readout only, key-padding path", readout_padded, "readout"),
    ):
        seconds = median_seconds(fn, args.repeats, device)
        rows.append((name, args.batch / seconds, rate / flops[kind]))
    base = rows[0][1]
    print(
        f"best matmul rate {rate / 1e9:,.0f} GFLOP/s; readout vs full path max |difference| {error:.1e}"
    )
    print(f"inference, batch {args.batch}, context sat+loc+env:")
    for name, cells, limit in rows:
        print(
            f"  {name:38s} {cells:10,.0f} cells/s  ({cells / base:.2f}x official; "
            f"{cells / limit:.0%} of its FLOP limit {limit:,.0f})"
        )

    model.train()
    loss_fn = ProM3ELoss()
    masking = make_masking("prom3e", seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    xb = F.normalize(torch.randn(args.train_batch, 6, 512, device=device), dim=-1)
    present = [0, 1, 2, 3, 4, 5]

    def step():
        visible = masking.sample(args.train_batch, present).to(device)
        with autocast(device, precision):
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


def matmul_rate(batch: int, device: torch.device, precision: str) -> float:
    """The best FLOP/s of the model's dominant product shapes ([rows, 1024] x [1024, 1024] and
    x [1024, 2048] for batch rows and for the 9 tokens of a batch): the ceiling of every path."""
    best = 0.0
    for rows, out in ((batch, 1024), (9 * batch, 1024), (9 * batch, 2048)):
        a, w = torch.randn(rows, 1024, device=device), torch.randn(out, 1024, device=device)

        def product(a=a, w=w):
            with torch.inference_mode(), autocast(device, precision):
                torch.nn.functional.linear(a, w)

        best = max(best, 2 * rows * 1024 * out / median_seconds(product, 5, device))
    return best


def path_flops(c, visible: int) -> dict[str, float]:
    """Matrix-product FLOPs per cell (depth-1 model, `visible` context tokens) of the official
    formulation (every token through the block, six decoders), the full path (image decoder
    only) and the readout-only path (keys/values of the visible tokens, two rows onward)."""
    e, i, mlp = c.embed_dim, c.input_dim, c.mlp_dim
    tokens = 2 + c.num_register_tokens + visible
    projector = 2 * (i * 2 * i + 2 * i * e)
    decoder = 2 * (e * e + e * i)
    row = 2 * (e * e) + 2 * (2 * e * mlp)  # out-projection + MLP of one row
    block = tokens * (3 * 2 * e * e + row)
    full = visible * projector + block
    readout = visible * (projector + 2 * 2 * e * e) + 2 * row + decoder
    return {"official": full + c.num_modalities * decoder, "full": full + decoder,
            "readout": readout}  # fmt: skip


if __name__ == "__main__":
    main()
