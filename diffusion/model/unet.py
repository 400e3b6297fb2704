"""A lean U-Net for 1-channel diffusion (Ho et al. 2020, appendix B; Nichol & Dhariwal 2021).

    x_t [B,1,R,R], t [B] ──► conv_in ──► down levels ──► middle ──► up levels ──► conv_out ──► [B,1,R,R]
                                  │        (skips)                    ▲
                                  └────────────────────────────────────┘
    t ──► sinusoidal embedding ──► MLP ──(+ label embedding)──► every ResBlock (scale/shift of its second GroupNorm)

* Level i works at resolution R / 2**i with ``base_channels * channel_mults[i]`` channels and has
  ``num_res_blocks`` ResBlocks on the way down and ``num_res_blocks + 1`` on the way up (the extra
  one consumes the skip of the downsampling conv), as in the DDPM reference U-Net.
* Self-attention follows every ResBlock of a level whose resolution is in
  ``attention_resolutions``, and sits in the middle (Res, Attn, Res) when ``mid_attention``.
  It uses ``torch.nn.functional.scaled_dot_product_attention`` (fused flash / memory-efficient
  kernels where the backend has them), on tokens taken straight from channels-last memory.
* The timestep modulates each ResBlock as h = GroupNorm(h) * (1 + scale) + shift
  ("adaptive group norm", Nichol & Dhariwal 2021 / Dhariwal & Nichol 2021 "use_scale_shift_norm").
* A conditional model (``config.labels``) adds a learned embedding of the class label to the
  time embedding, as Ho & Salimans 2022 ("Classifier-Free Diffusion Guidance") and Dhariwal &
  Nichol 2021 do; row ``len(labels)`` is the null class, trained by dropping labels, so one
  network predicts both with and without a label (``diffusion.model.guidance``).
* All layers keep PyTorch's default initialisation. Zero-initialising the output conv and the
  last conv of each residual branch (as the DDPM / improved-diffusion code does) was measured
  here to slow the first few hundred steps by 2-3x in eps-MSE at lr 2e-4 (benchmarks/RESULTS.md).

The architecture is fully described by a ``UNetConfig`` (saved in a run's config.json).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffusion.model.config import UNetConfig

__all__ = ["UNetConfig", "UNet", "parameter_count", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017; DDPM appendix B).

    emb[:, i] = sin(t * w_i), emb[:, half + i] = cos(t * w_i), w_i = max_period**(-i/half).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _silu(h: torch.Tensor) -> torch.Tensor:
    """SiLU, in place when no graph is being recorded (sampling): the same bits, one memory pass
    fewer per activation, 1.08-1.12x per sampling call (benchmarks/RESULTS.md). Only ever applied
    to a tensor the caller has just made (a GroupNorm's output), never to one that is still needed."""
    return F.silu(h, inplace=not torch.is_grad_enabled())


class ResBlock(nn.Module):
    """GN-SiLU-Conv, then GN modulated by the timestep (scale/shift), SiLU, dropout, Conv; plus skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(_silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, with GroupNorm before and a residual after."""

    def __init__(self, ch: int, groups: int, head_channels: int) -> None:
        super().__init__()
        self.heads = ch // head_channels
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = nn.Linear(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # [B,C,H,W] -> tokens [B,HW,C]: a free view when x is channels-last.
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        q, k, v = self.qkv(tokens).view(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, d], fused kernel
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        return x + out.view(b, h, w, c).permute(0, 3, 1, 2)


class Downsample(nn.Module):
    """Stride-2 3x3 conv (learned downsampling, as in DDPM)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv (avoids checkerboard artefacts)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Predicts the noise (or v) of x_t at timestep t: forward(x [B,C,R,R] float, t [B] long) -> [B,C,R,R]."""

    def __init__(self, config: UNetConfig, *, channels_last: bool = False) -> None:
        super().__init__()
        config.validate()
        self.config = config
        # Run the activations in channels-last memory (weights keep their usual layout, so
        # state_dict / safetensors see ordinary contiguous tensors). See benchmarks/RESULTS.md.
        self.channels_last = channels_last
        c = config
        groups, emb_dim = c.norm_groups, 4 * c.base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(c.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_embedding = nn.Embedding(len(c.labels) + 1, emb_dim) if c.conditional else None
        self.conv_in = nn.Conv2d(c.channels, c.base_channels, 3, padding=1)

        # Down path: each entry is (ResBlock, attention or None) or a Downsample; every entry
        # (and conv_in) pushes one skip tensor, consumed in reverse order by the up path.
        self.down = nn.ModuleList()
        skip_channels = [c.base_channels]
        ch = c.base_channels
        for level, (mult, res) in enumerate(zip(c.channel_mults, c.level_resolutions)):
            out_ch = c.base_channels * mult
            for _ in range(c.num_res_blocks):
                attn = SelfAttention(out_ch, groups, c.head_channels) if res in c.attention_resolutions else None
                self.down.append(nn.ModuleList([ResBlock(ch, out_ch, emb_dim, groups, c.dropout)] + ([attn] if attn else [])))
                ch = out_ch
                skip_channels.append(ch)
            if level < len(c.channel_mults) - 1:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, groups, c.dropout)
        self.mid_attn = SelfAttention(ch, groups, c.head_channels) if c.mid_attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb_dim, groups, c.dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(len(c.channel_mults))):
            out_ch = c.base_channels * c.channel_mults[level]
            res = c.level_resolutions[level]
            for _ in range(c.num_res_blocks + 1):
                block = ResBlock(ch + skip_channels.pop(), out_ch, emb_dim, groups, c.dropout)
                attn = SelfAttention(out_ch, groups, c.head_channels) if res in c.attention_resolutions else None
                self.up.append(nn.ModuleList([block] + ([attn] if attn else [])))
                ch = out_ch
            if level > 0:
                self.up.append(Upsample(ch))
        assert not skip_channels

        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, c.channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B,C,R,R] noisy images; t: [B] integer timesteps (0 .. T-1). Returns [B,C,R,R].

        ``labels`` (conditional models only): [B] label indices (``config.null_label`` for none),
        or [B, len(labels) + 1] weights that mix the label embeddings (an interpolation between
        labels). None on a conditional model is the null class.
        """
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels).to(x.dtype))
        if self.label_embedding is not None:
            emb = emb + self._label_vectors(labels, x.shape[0], x.device).to(emb.dtype)
        elif labels is not None:
            raise ValueError("labels given to an unconditional UNet")
        h = self.conv_in(x)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        skips = [h]
        for entry in self.down:
            if isinstance(entry, Downsample):
                h = entry(h)
            else:
                h = entry[0](h, emb)
                if len(entry) > 1:
                    h = entry[1](h)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for entry in self.up:
            if isinstance(entry, Upsample):
                h = entry(h)
            else:
                h = entry[0](torch.cat([h, skips.pop()], dim=1), emb)
                if len(entry) > 1:
                    h = entry[1](h)
        return self.conv_out(_silu(self.norm_out(h)))


    def _label_vectors(self, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        table = self.label_embedding.weight
        if labels is None:
            labels = torch.full((batch,), self.config.null_label, dtype=torch.long, device=device)
        if labels.dtype == torch.long:
            return F.embedding(labels, table)
        # In float32 (autocast off): weights that pick one row give that row exactly.
        with torch.autocast(device_type=device.type, enabled=False):
            return labels.float() @ table.float()


def parameter_count(model: nn.Module) -> int:
    """Number of parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
