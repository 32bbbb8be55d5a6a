"""ProM3E: the probabilistic masked multimodal embedding model (a masked VAE over embeddings).

Inputs are L2-normalised 512-d embeddings of up to six modalities, in the fixed order
`image, sat, loc, env, text, audio`, plus which of them are visible. Each visible embedding is
projected to the model width and tagged with its modality identifier; two readout tokens
([mu], [logvar]) and register tokens join them in a post-LN transformer encoder. The [mu] token
(L2-normalised) and the [logvar] token parameterise a Gaussian latent; per-modality decoders map a
latent sample back to every modality's embedding space.

Module names and shapes follow the released 27.3 M-parameter checkpoint exactly, so official
weights load without renaming (see `prom3e_geo.model.checkpoint`).

Visibility can differ per sample: masked modality tokens are excluded through the attention key
padding mask. Attention without positional encodings is invariant to the order of its keys, so
this gives the same [mu]/[logvar] as the official formulation that drops masked tokens from the
sequence; when the whole batch shares one visibility the tokens are dropped outright (faster).

Maps need only [mu] and [logvar]: `readout` computes the last block for those two rows alone
(the keys and values of every token, the queries of two), and with one block the prefix tokens'
projections do not depend on the input, so they are computed once per call, not per sample:
about a quarter of the full path's arithmetic for the released model with three visible
modalities. `encode` (every token through every block) stays for training, evaluation and
register tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import overload

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

MODALITIES = ("image", "sat", "loc", "env", "text", "audio")
NUM_READOUT_TOKENS = 2  # [mu] and [logvar]


class ProM3EConfig(BaseModel):
    """Architecture; the defaults are the released model's. Recipes check it strictly (a wrong
    key or value type is refused); checkpoint configs go through `from_dict`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    input_dim: int = Field(512, gt=0, description="Width of the input embeddings.")
    embed_dim: int = Field(1024, gt=0, description="Transformer width.")
    num_modalities: int = Field(6, gt=0, description="Modality tokens (image, sat, loc, ...).")
    depth: int = Field(1, gt=0, description="Transformer blocks.")
    heads: int = Field(8, gt=0, description="Attention heads (must divide embed_dim).")
    mlp_dim: int = Field(2048, gt=0, description="Hidden width of the blocks' and decoders' MLPs.")
    num_register_tokens: int = Field(4, ge=0, description="Register tokens beside the readouts.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability while training.")

    def to_dict(self) -> dict[str, int | float]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProM3EConfig:
        """Build from a checkpoint's config, ignoring training-only keys (lambda_kl, masked_only,
        ...); numbers are converted as the config file spells them (`512.0`)."""
        if data.get("num_cls_tokens", NUM_READOUT_TOKENS) != NUM_READOUT_TOKENS:
            raise ValueError("ProM3E needs exactly 2 readout tokens ([mu], [logvar])")
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        return cls.model_validate(known, strict=False)


@dataclass
class ProM3EOutput:
    """What a forward pass gives: latent, reconstructions and every hidden token."""

    mu: torch.Tensor  # [B, E], L2-normalised
    logvar: torch.Tensor  # [B, E]
    recon: torch.Tensor  # [B, M, I], L2-normalised reconstructions of every modality
    hidden: torch.Tensor  # [B, 2 + R + M, E]: [mu], [logvar], registers, modality tokens
    visible: torch.Tensor  # [B, M] bool

    @property
    def sigma_l1(self) -> torch.Tensor:
        """||sigma||_1 = sum over the latent dims of exp(logvar / 2), one value per sample."""
        return torch.exp(0.5 * self.logvar.float()).sum(dim=-1)


class MLP(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear -> Dropout (no residual)."""

    def __init__(self, dim: int, hidden: int, out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class TransformerBlock(nn.Module):
    """Post-LN block: x = LN(attn(x) + x); x = LN(mlp(x) + x)."""

    def __init__(self, dim: int, mlp_dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        attended = self.attn(x, x, x, key_padding_mask=padding, need_weights=False)[0]
        x = self.norm1(attended + x)
        out: torch.Tensor = self.norm2(self.mlp(x) + x)
        return out


class ProM3E(nn.Module):
    """The ProM3E masked VAE (see the module docstring)."""

    def __init__(self, config: ProM3EConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ProM3EConfig()
        self.projectors = nn.ModuleList(
            MLP(c.input_dim, 2 * c.input_dim, c.embed_dim, c.dropout)
            for _ in range(c.num_modalities)
        )
        self.modality_identifiers = nn.ParameterList(
            nn.Parameter(torch.randn(c.embed_dim)) for _ in range(c.num_modalities)
        )
        self.cls_tokens = nn.Parameter(torch.randn(NUM_READOUT_TOKENS, c.embed_dim))
        self.register_tokens = nn.Parameter(torch.randn(c.num_register_tokens, c.embed_dim))
        self.encoder = nn.ModuleList(
            TransformerBlock(c.embed_dim, c.mlp_dim, c.heads, c.dropout) for _ in range(c.depth)
        )
        self.decoders = nn.ModuleList(
            MLP(c.embed_dim, c.embed_dim, c.input_dim, c.dropout) for _ in range(c.num_modalities)
        )
        # The contrastive-reconstruction loss's learnable scale (alpha) and shift (beta) live in
        # the model so that they travel with its checkpoint, as in the released weights.
        self.negative_scale = nn.Parameter(torch.ones([]) * -5)
        self.negative_shift = nn.Parameter(torch.ones([]) * 5)

    @property
    def num_prefix_tokens(self) -> int:
        return NUM_READOUT_TOKENS + self.config.num_register_tokens

    # -- encoder --------------------------------------------------------------------------------
    def encode(
        self, embeddings: torch.Tensor, visible: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, logvar, hidden) for embeddings [B, M, I] with visibility [B, M] (bool).

        `hidden` always has one slot per modality; slots of masked modalities hold the projected
        (unattended) token and should be ignored.
        """
        b, m, _ = embeddings.shape
        if visible.shape != (b, m) or visible.dtype != torch.bool:
            raise ValueError(f"visible must be a bool tensor of shape {(b, m)}")
        if not bool(visible.any(dim=1).all()):
            raise ValueError("every sample needs at least one visible modality")
        used = visible.any(dim=0).tolist()
        tokens = torch.zeros(
            b, m, self.config.embed_dim, device=embeddings.device, dtype=self._dtype(embeddings)
        )
        for i in range(m):
            if used[i]:
                tokens[:, i] = self.projectors[i](embeddings[:, i]) + self.modality_identifiers[i]
        prefix = torch.cat([self.cls_tokens, self.register_tokens]).to(tokens.dtype)
        sequence = torch.cat([prefix.expand(b, -1, -1), tokens], dim=1)

        shared = bool((visible == visible[:1]).all())
        if shared:  # one visibility for the batch: drop the masked tokens (no padding needed)
            keep = torch.cat(
                [
                    torch.arange(self.num_prefix_tokens, device=visible.device),
                    self.num_prefix_tokens + torch.nonzero(visible[0]).flatten(),
                ]
            )
            x = sequence[:, keep]
            for block in self.encoder:
                x = block(x)
            hidden = sequence.to(x.dtype, copy=True)  # under autocast the blocks return float32
            hidden[:, keep] = x
        else:
            prefix_pad = torch.zeros(
                b, self.num_prefix_tokens, dtype=torch.bool, device=visible.device
            )
            padding = torch.cat([prefix_pad, ~visible], dim=1)
            hidden = sequence
            for block in self.encoder:
                hidden = block(hidden, padding)
        mu = F.normalize(hidden[:, 0], dim=-1)
        logvar = hidden[:, 1]
        return mu, logvar, hidden

    def readout(
        self, embeddings: torch.Tensor, visible: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) as `encode` gives them, with the last block computed for the two readout
        rows only (see the module docstring)."""
        b, m, _ = embeddings.shape
        if visible.shape != (b, m) or visible.dtype != torch.bool:
            raise ValueError(f"visible must be a bool tensor of shape {(b, m)}")
        if not bool(visible.any(dim=1).all()):
            raise ValueError("every sample needs at least one visible modality")
        dtype = self._dtype(embeddings)
        shared = bool((visible == visible[:1]).all())
        columns = torch.nonzero(visible[0]).flatten().tolist() if shared else list(range(m))
        tokens = torch.zeros(b, len(columns), self.config.embed_dim, device=embeddings.device,
                             dtype=dtype)  # fmt: skip
        for j, i in enumerate(columns):
            if bool(visible[:, i].any()):
                tokens[:, j] = self.projectors[i](embeddings[:, i]) + self.modality_identifiers[i]
        prefix = torch.cat([self.cls_tokens, self.register_tokens]).to(dtype)
        p = self.num_prefix_tokens
        keys_ok = None
        if not shared:
            keys_ok = torch.cat(
                [torch.ones(b, p, dtype=torch.bool, device=visible.device), visible], dim=1
            )
        *earlier, last = self.encoder
        assert isinstance(last, TransformerBlock)  # the encoder holds TransformerBlocks only
        if earlier:  # every token through the earlier blocks; their prefix rows now vary
            x = torch.cat([prefix.expand(b, -1, -1), tokens], dim=1)
            for block in earlier:
                x = block(x, None if keys_ok is None else ~keys_ok)
            rows = x[:, :NUM_READOUT_TOKENS]
            queries, keys, values = _project(last.attn, rows, x)
        else:  # one block: the prefix's projections are the same for every sample
            rows = prefix[:NUM_READOUT_TOKENS].expand(b, -1, -1)
            q_rows, k_rows, v_rows = _project(last.attn, prefix[:NUM_READOUT_TOKENS], prefix)
            _, k_tokens, v_tokens = _project(last.attn, None, tokens)
            queries = q_rows.expand(b, -1, -1)
            keys = torch.cat([k_rows.expand(b, -1, -1), k_tokens], dim=1)
            values = torch.cat([v_rows.expand(b, -1, -1), v_tokens], dim=1)
        attended = _attend(last.attn, queries, keys, values, keys_ok)
        y = last.norm1(attended + rows)
        y = last.norm2(last.mlp(y) + y)
        return F.normalize(y[:, 0], dim=-1), y[:, 1]

    def _dtype(self, embeddings: torch.Tensor) -> torch.dtype:
        if torch.is_autocast_enabled(embeddings.device.type):
            return torch.get_autocast_dtype(embeddings.device.type)
        return self.cls_tokens.dtype

    # -- latent and decoders --------------------------------------------------------------------
    @staticmethod
    def sample_latent(
        mu: torch.Tensor,
        logvar: torch.Tensor,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean of `n_samples` draws z = mu + sigma * eps with one scalar eps per sample (as the
        released model was trained); `n_samples=0` returns mu (deterministic decoding)."""
        if n_samples == 0:
            return mu
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(
            n_samples, mu.shape[0], 1, device=mu.device, generator=generator, dtype=mu.dtype
        )
        return (mu + std * eps).mean(dim=0)

    def decode(self, z: torch.Tensor, modalities: list[int] | None = None) -> torch.Tensor:
        """L2-normalised reconstructions [B, M, I]; modalities not asked for are left at zero."""
        wanted = range(self.config.num_modalities) if modalities is None else modalities
        out = torch.zeros(
            z.shape[0],
            self.config.num_modalities,
            self.config.input_dim,
            device=z.device,
            dtype=z.dtype,
        )
        for i in wanted:
            out[:, i] = self.decoders[i](z).to(z.dtype)
        return F.normalize(out, dim=-1)

    def forward(
        self,
        embeddings: torch.Tensor,
        visible: torch.Tensor,
        n_samples: int = 0,
        generator: torch.Generator | None = None,
    ) -> ProM3EOutput:
        """Encode, then decode every modality from the latent (deterministic with n_samples=0,
        else the mean of n_samples latent draws, as the official inference with 5)."""
        mu, logvar, hidden = self.encode(embeddings, visible)
        z = self.sample_latent(mu, logvar, n_samples, generator)
        return ProM3EOutput(mu, logvar, self.decode(z), hidden, visible)


@overload
def _project(
    attn: nn.MultiheadAttention, queries_of: torch.Tensor, keys_of: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
@overload
def _project(
    attn: nn.MultiheadAttention, queries_of: None, keys_of: torch.Tensor
) -> tuple[None, torch.Tensor, torch.Tensor]: ...
def _project(
    attn: nn.MultiheadAttention, queries_of: torch.Tensor | None, keys_of: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The attention's input projections: queries of `queries_of` (None: skipped), keys and
    values of `keys_of` ([..., E] tensors)."""
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    q = None if queries_of is None else F.linear(queries_of, w_q, b_q)
    return q, F.linear(keys_of, w_k, b_k), F.linear(keys_of, w_v, b_v)


def _attend(
    attn: nn.MultiheadAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keys_ok: torch.Tensor | None,
) -> torch.Tensor:
    """Multi-head scaled dot-product attention of projected [B, rows, E] queries over [B, S, E]
    keys and values (`keys_ok` [B, S]: the keys each sample may attend), then the out-projection,
    as `nn.MultiheadAttention` computes it."""
    b, rows, e = q.shape
    h = attn.num_heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, -1, h, e // h).transpose(1, 2)

    mask = None if keys_ok is None else keys_ok[:, None, None, :]
    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask)
    projected: torch.Tensor = attn.out_proj(out.transpose(1, 2).reshape(b, rows, e))
    return projected


def visibility(
    batch: int,
    visible_modalities: list[int] | tuple[int, ...],
    num_modalities: int = 6,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A [batch, M] bool mask with the same visible modalities for every sample."""
    mask = torch.zeros(batch, num_modalities, dtype=torch.bool, device=device)
    mask[:, list(visible_modalities)] = True
    return mask
