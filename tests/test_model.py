"""ProM3E: size, per-sample masking, outputs, and official-layout checkpoints against an
independent functional forward written here from the documented key list and shapes."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from prom3e_geo.errors import InputError
from prom3e_geo.model import ProM3E, ProM3EConfig, visibility
from prom3e_geo.model.checkpoint import load_prom3e, save_prom3e

IN, E, H, M, R = 512, 1024, 2048, 6, 4


def documented_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for every key of the released model (method notes, section 1.9)."""
    g = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple] = {}
    for m in range(M):
        shapes |= {
            f"projectors.{m}.net.0.weight": (IN,),
            f"projectors.{m}.net.0.bias": (IN,),
            f"projectors.{m}.net.1.weight": (2 * IN, IN),
            f"projectors.{m}.net.1.bias": (2 * IN,),
            f"projectors.{m}.net.4.weight": (E, 2 * IN),
            f"projectors.{m}.net.4.bias": (E,),
            f"modality_identifiers.{m}": (E,),
            f"decoders.{m}.net.0.weight": (E,),
            f"decoders.{m}.net.0.bias": (E,),
            f"decoders.{m}.net.1.weight": (E, E),
            f"decoders.{m}.net.1.bias": (E,),
            f"decoders.{m}.net.4.weight": (IN, E),
            f"decoders.{m}.net.4.bias": (IN,),
        }
    shapes |= {
        "cls_tokens": (2, E),
        "register_tokens": (R, E),
        "encoder.0.attn.in_proj_weight": (3 * E, E),
        "encoder.0.attn.in_proj_bias": (3 * E,),
        "encoder.0.attn.out_proj.weight": (E, E),
        "encoder.0.attn.out_proj.bias": (E,),
        "encoder.0.norm1.weight": (E,),
        "encoder.0.norm1.bias": (E,),
        "encoder.0.mlp.net.0.weight": (E,),
        "encoder.0.mlp.net.0.bias": (E,),
        "encoder.0.mlp.net.1.weight": (H, E),
        "encoder.0.mlp.net.1.bias": (H,),
        "encoder.0.mlp.net.4.weight": (E, H),
        "encoder.0.mlp.net.4.bias": (E,),
        "encoder.0.norm2.weight": (E,),
        "encoder.0.norm2.bias": (E,),
        "negative_scale": (),
        "negative_shift": (),
    }
    state = {}
    for key, shape in shapes.items():
        fan_in = shape[-1] if len(shape) == 2 else 1
        state[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        if key.endswith("norm1.weight") or key.endswith("norm2.weight") or ".net.0.weight" in key:
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
    return state


def reference_forward(sd, x, visible: list[int], heads: int = 8):
    """The official formulation: only visible tokens, in list order; plain tensor maths."""

    def ln(t, p):
        return F.layer_norm(t, (t.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], 1e-5)

    def mlp(t, p):
        h = F.gelu(F.linear(ln(t, p + ".net.0"), sd[p + ".net.1.weight"], sd[p + ".net.1.bias"]))
        return F.linear(h, sd[p + ".net.4.weight"], sd[p + ".net.4.bias"])

    b = x.shape[0]
    tokens = [mlp(x[:, m], f"projectors.{m}") + sd[f"modality_identifiers.{m}"] for m in visible]
    seq = torch.cat(
        [
            sd["cls_tokens"].expand(b, -1, -1),
            sd["register_tokens"].expand(b, -1, -1),
            torch.stack(tokens, dim=1),
        ],
        dim=1,
    )
    w, bias = sd["encoder.0.attn.in_proj_weight"], sd["encoder.0.attn.in_proj_bias"]
    q, k, v = (seq @ w[i * E : (i + 1) * E].T + bias[i * E : (i + 1) * E] for i in range(3))
    d = E // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v
    att = F.linear(
        att.transpose(1, 2).reshape(b, -1, E),
        sd["encoder.0.attn.out_proj.weight"],
        sd["encoder.0.attn.out_proj.bias"],
    )
    seq = ln(att + seq, "encoder.0.norm1")
    seq = ln(mlp(seq, "encoder.0.mlp") + seq, "encoder.0.norm2")
    mu, logvar = F.normalize(seq[:, 0], dim=-1), seq[:, 1]
    recon = torch.stack([F.normalize(mlp(mu, f"decoders.{m}"), dim=-1) for m in range(M)], dim=1)
    return mu, logvar, recon


def inputs(b=4, seed=1):
    return F.normalize(torch.randn(b, M, IN, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_default_model_has_the_released_parameter_count():
    assert sum(p.numel() for p in ProM3E().parameters()) == 27_328_514


def test_padding_mask_equals_dropping_tokens_per_sample():
    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(input_dim=32, embed_dim=64, heads=4, mlp_dim=128, depth=2)).eval()
    x = F.normalize(torch.randn(12, M, 32), dim=-1)
    visible = torch.rand(12, M) < 0.4
    visible[torch.arange(12), torch.randint(0, M, (12,))] = True
    with torch.no_grad():
        mu, logvar, hidden = model.encode(x, visible)  # mixed: key padding mask
        for i in range(12):
            mu_i, logvar_i, hidden_i = model.encode(x[i : i + 1], visible[i : i + 1])  # dropped
            torch.testing.assert_close(mu[i], mu_i[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(logvar[i], logvar_i[0], atol=1e-5, rtol=1e-5)
            slots = torch.cat([torch.arange(6), 6 + torch.nonzero(visible[i]).flatten()])
            torch.testing.assert_close(hidden[i, slots], hidden_i[0, slots], atol=1e-5, rtol=1e-5)


def test_bf16_autocast_matches_float32_for_shared_and_mixed_visibility():
    """CUDA inference and training run under bf16 autocast; CPU autocast takes the same paths."""
    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(input_dim=32, embed_dim=64, heads=4, mlp_dim=128, depth=2)).eval()
    x = F.normalize(torch.randn(8, M, 32), dim=-1)
    shared = torch.zeros(8, M, dtype=torch.bool)
    shared[:, [1, 4]] = True
    mixed = shared.clone()
    mixed[::2, 2] = True
    for visible in (shared, mixed):
        with torch.no_grad():
            mu, logvar, _ = model.encode(x, visible)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mu16, logvar16, _ = model.encode(x, visible)
        assert (F.cosine_similarity(mu, mu16.float(), dim=-1) > 0.99).all()
        torch.testing.assert_close(logvar16.float(), logvar, atol=0.1, rtol=0.05)


def test_outputs_shapes_sigma_and_sampling_modes():
    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(input_dim=32, embed_dim=64, heads=4, mlp_dim=128)).eval()
    x = F.normalize(torch.randn(5, M, 32), dim=-1)
    with torch.no_grad():
        out = model(x, visibility(5, [1, 2, 3]))
        again = model(x, visibility(5, [1, 2, 3]))
        sampled = model(
            x, visibility(5, [1, 2, 3]), n_samples=5, generator=torch.Generator().manual_seed(3)
        )
    assert out.recon.shape == (5, M, 32) and out.hidden.shape == (5, 2 + 4 + M, 64)
    torch.testing.assert_close(out.recon.norm(dim=-1), torch.ones(5, M))
    torch.testing.assert_close(out.mu.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(out.sigma_l1, torch.exp(out.logvar / 2).sum(-1))
    torch.testing.assert_close(out.recon, again.recon)  # eps = 0 is deterministic
    g = torch.Generator().manual_seed(3)
    eps = torch.randn(5, 5, 1, generator=g)
    z = (out.mu + torch.exp(0.5 * out.logvar) * eps).mean(0)
    torch.testing.assert_close(sampled.recon, model.decode(z).detach())


def test_every_sample_needs_a_visible_modality():
    model = ProM3E(ProM3EConfig(input_dim=8, embed_dim=16, heads=2, mlp_dim=16))
    with pytest.raises(ValueError, match="at least one visible"):
        model.encode(torch.randn(2, M, 8), torch.zeros(2, M, dtype=torch.bool))


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory):
    state = documented_state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "prom3e.ckpt"
    lightning = {
        "state_dict": {f"model.{k}": v for k, v in state.items()},
        "hyper_parameters": {"embed_dim": 1024, "heads": 8, "lambda_kl": 1e-3},
        "epoch": 499,
        "global_step": 12345,
    }
    torch.save(lightning, path)
    return path, state


def test_official_lightning_checkpoint_reproduces_the_reference_forward(official_ckpt):
    path, state = official_ckpt
    loaded = load_prom3e(path)
    assert loaded.source == "lightning" and loaded.model.config == ProM3EConfig()
    x = inputs()
    for visible in ([2], [1, 2, 3], [0, 4]):
        with torch.no_grad():
            out = loaded.model(x, visibility(4, visible))
        mu, logvar, recon = reference_forward(state, x, visible)
        torch.testing.assert_close(out.mu, mu, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.logvar, logvar, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(out.recon, recon, atol=2e-5, rtol=1e-4)


def test_hugging_face_folder_and_our_safetensors(official_ckpt, tmp_path):
    _, state = official_ckpt
    folder = tmp_path / "hub"
    folder.mkdir()
    config = {
        "input_dim": 512,
        "embed_dim": 1024,
        "num_modalities": 6,
        "depth": 1,
        "heads": 8,
        "mlp_dim": 2048,
        "num_register_tokens": 4,
        "num_cls_tokens": 2,
        "masked_only": False,
        "dropout": 0.0,
        "lambda_kl": 0.001,
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, folder / "model.safetensors")
    hub = load_prom3e(folder)
    assert hub.source == "huggingface"
    ours = load_prom3e(save_prom3e(hub.model, tmp_path / "ours.safetensors"))
    x = inputs()
    with torch.no_grad():
        a = hub.model(x, visibility(4, [2]))
        b = ours.model(x, visibility(4, [2]))
    torch.testing.assert_close(a.recon, b.recon, atol=0, rtol=0)
    torch.save(state, folder / "pytorch_model.bin")
    os.remove(folder / "model.safetensors")
    assert load_prom3e(folder).sha256 != hub.sha256


def test_key_mismatch_names_missing_and_unexpected_keys(official_ckpt, tmp_path):
    _, state = official_ckpt
    bad = dict(state)
    bad["encoder.0.attn.qkv.weight"] = bad.pop("encoder.0.attn.in_proj_weight")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InputError) as exc:
        load_prom3e(tmp_path / "bad.pt")
    message = str(exc.value)
    assert "missing keys encoder.0.attn.in_proj_weight" in message
    assert "unexpected keys encoder.0.attn.qkv.weight" in message
    assert "\n" not in message


def test_shape_mismatch_and_foreign_files(tmp_path):
    small = ProM3E(ProM3EConfig(input_dim=8, embed_dim=16, heads=2, mlp_dim=16)).state_dict()
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"input_dim": 8, "embed_dim": 32, "heads": 2, "mlp_dim": 16})
    )
    save_file({k: v.contiguous() for k, v in small.items()}, folder / "model.safetensors")
    with pytest.raises(InputError, match="shapes differ"):
        load_prom3e(folder)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="cannot be read"):
        load_prom3e(tmp_path / "junk.ckpt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a ProM3E checkpoint"):
        load_prom3e(tmp_path / "other.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_prom3e(tmp_path / "missing.ckpt")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_pickles_that_execute_code_are_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(InputError, match="needs code execution"):
        load_prom3e(path)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("shared", [True, False])
def test_readout_only_inference_equals_the_full_encoder(depth, shared):
    """`readout` computes the last block for [mu] and [logvar] only; it must give what every
    token through every block gives, for one visibility or one per sample."""
    torch.manual_seed(depth)
    model = ProM3E(ProM3EConfig(embed_dim=256, heads=4, mlp_dim=512, depth=depth)).eval()
    for p in model.parameters():  # trained-looking weights, not the init's
        p.data.add_(0.02 * torch.randn_like(p))
    x = torch.nn.functional.normalize(torch.randn(64, 6, 512), dim=-1)
    visible = visibility(64, [1, 2, 3])
    if not shared:
        visible = torch.rand(64, 6) < 0.5
        visible[torch.arange(64), torch.randint(0, 6, (64,))] = True
    with torch.no_grad():
        mu, logvar, _ = model.encode(x, visible)
        mu_r, logvar_r = model.readout(x, visible)
        recon = model.decode(mu, [0])[:, 0]
        recon_r = model.decode(mu_r, [0])[:, 0]
    assert (logvar - logvar_r).abs().max() < 1e-5 * logvar.abs().max()
    assert (mu - mu_r).abs().max() < 1e-5 and (recon - recon_r).abs().max() < 1e-5
