"""The model's configuration and vocabularies, without torch.

What ``config.json`` and a store header name about the network — its architecture
(:class:`UNetConfig`), what it predicts (:data:`PREDICTIONS`) and how it is sampled
(:data:`SAMPLERS`) — is read by run loaders, ``entropic info`` and the command line's help pages,
none of which need torch. The modules that compute with these (:mod:`diffusion.model.unet`,
:mod:`diffusion.model.objective`, :mod:`diffusion.model.samplers`) import them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from diffusion.common.errors import EntropicError
from diffusion.common.validation import config_from_dict, config_to_dict

__all__ = [
    "UNetConfig",
    "PREDICTIONS",
    "DEFAULT_PREDICTION",
    "SAMPLERS",
    "DEFAULT_GUIDANCE",
    "MAX_GUIDANCE",
    "check_prediction",
    "check_guidance",
]

# What the network predicts: the noise (Ho et al. 2020) or the velocity v (Salimans & Ho 2022);
# why "v" is the default is in diffusion.model.objective.
PREDICTIONS = ("eps", "v")
DEFAULT_PREDICTION = "v"
# The reverse processes of diffusion.model.samplers.
SAMPLERS = ("ddpm", "ddim")


# Classifier-free guidance scale (diffusion.model.guidance): 1 is the label alone, 0 no label.
DEFAULT_GUIDANCE = 3.0
# Beyond this the guided prediction is mostly the amplified difference of two predictions, and
# the clipped x_0 estimates saturate to black and white (Ho & Salimans show w' <= 4, Saharia
# et al. 2022 use up to 30 only with dynamic thresholding).
MAX_GUIDANCE = 20.0


def check_guidance(value: object, option: str = "--guidance") -> float:
    """``value`` as a float guidance scale in [0, MAX_GUIDANCE]; EntropicError naming ``option`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EntropicError(f"{option} must be a finite number, got {value!r}")
    if not 0.0 <= value <= MAX_GUIDANCE:
        raise EntropicError(
            f"{option} {value:g} is outside 0..{MAX_GUIDANCE:g} (0: no label, 1: the label alone, "
            f"{DEFAULT_GUIDANCE:g}: the default push towards it)"
        )
    return float(value)


def check_prediction(prediction: str) -> str:
    """Return ``prediction`` if it is "eps" or "v", else raise EntropicError."""
    if prediction not in PREDICTIONS:
        raise EntropicError(f"prediction {prediction!r} is unknown; use 'eps' or 'v'")
    return prediction


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Upper bounds of the architecture (the reasons are in the messages), so that an absurd size is
# refused with its reason instead of failing to allocate, or being killed for memory, later.
# The default is far inside them.
MAX_RESOLUTION = 1024
MAX_CHANNELS = 4
MAX_LEVEL_CHANNELS = 4096
MAX_LEVELS = 8
MAX_RES_BLOCKS = 16
MAX_LABELS = 10_000

_UPPER_BOUNDS = {
    "resolution": (MAX_RESOLUTION, "the dataset is held in memory at this side and every activation grows with its square"),
    "channels": (MAX_CHANNELS, "image channels: gray, gray + alpha, RGB or RGBA"),
    "base_channels": (MAX_LEVEL_CHANNELS, "a 3x3 convolution at this width already holds 151 M weights"),
    "num_res_blocks": (MAX_RES_BLOCKS, "2 is usual (DDPM); every block adds two convolutions at each level"),
    "head_channels": (MAX_LEVEL_CHANNELS, "no level is wider than this"),
    "norm_groups": (MAX_LEVEL_CHANNELS, "no level is wider than this"),
}


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the U-Net. Validate once at the edge with ``validate()``.

    resolution: side of the square input (must be divisible by 2**(len(channel_mults)-1)).
    channels: image channels (1 for grayscale).
    base_channels: width of the first level; level i has base_channels * channel_mults[i].
    channel_mults: width multiplier per level; its length is the depth (number of levels).
    num_res_blocks: ResBlocks per level on the way down (one more on the way up).
    attention_resolutions: resolutions (in pixels) at which self-attention follows each ResBlock.
    dropout: dropout inside the ResBlocks (0 for small data is usually fine).
    head_channels: channels per attention head (heads = level channels // head_channels).
    norm_groups: GroupNorm groups; must divide every level's channel count.
    mid_attention: self-attention between the two middle ResBlocks.
    labels: the class labels the model is steered by, in embedding order (empty: an
        unconditional model). A conditional model learns one embedding per label and one more,
        the null class (index ``len(labels)``), for "no label" (classifier-free guidance).

    The default (16-32-64-128 channels, 2 blocks per level, attention at 16 px and in the middle,
    3.7 M parameters, 7.4 MB in float16) is lean for CPU training: the cost of a conv grows with
    pixels x channels^2 while its parameters grow with channels^2 only, so it keeps the full-
    resolution levels narrow and spends parameters at low resolution where they are cheap
    (2.3x fewer training FLOPs than a 32-64-64-128 layout of similar size; measurements in
    benchmarks/RESULTS.md). It fits 32, 64 and 128 px unchanged.
    """

    resolution: int = 64
    channels: int = 1
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    head_channels: int = 32
    norm_groups: int = 8
    mid_attention: bool = True
    labels: tuple[str, ...] = ()

    # Keys that config.json files written before they existed lack (diffusion.runs.layout.config_section).
    ADDED_LATER: ClassVar[tuple[str, ...]] = ("labels",)

    def __post_init__(self) -> None:
        # Accept lists (from JSON) but store tuples, so configs compare and hash by value.
        for name in ("channel_mults", "attention_resolutions", "labels"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    @property
    def conditional(self) -> bool:
        """Whether the model is steered by class labels."""
        return bool(self.labels)

    @property
    def null_label(self) -> int:
        """Index of the null class ("no label") in the label embedding."""
        return len(self.labels)

    def label_index(self, label: str | None) -> int:
        """Embedding index of ``label`` (None: the null class); EntropicError listing the known labels."""
        if label is None:
            return self.null_label
        if not self.labels:
            raise EntropicError(f"label {label!r} asked of an unconditional model (it was trained without labels)")
        if label not in self.labels:
            raise EntropicError(f"label {label!r} is unknown to this model; it knows {', '.join(self.labels)}")
        return self.labels.index(label)

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        """Resolution of each level: R, R/2, ..., R/2**(levels-1)."""
        return tuple(self.resolution // 2**i for i in range(len(self.channel_mults)))

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channel count of each level."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    def validate(self) -> None:
        """Raise EntropicError naming the first bad field, its value and the fix."""
        for name in ("resolution", "channels", "base_channels", "num_res_blocks", "head_channels", "norm_groups"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise EntropicError(f"model {name} must be a positive integer, got {value!r}")
            bound, why = _UPPER_BOUNDS[name]
            if value > bound:
                raise EntropicError(f"model {name} must be at most {bound:,}, got {value:,} ({why})")
        if not isinstance(self.channel_mults, tuple) or len(self.channel_mults) == 0:
            raise EntropicError(
                f"model channel_mults must be a non-empty list of positive integers, got {self.channel_mults!r}"
            )
        if len(self.channel_mults) > MAX_LEVELS:
            raise EntropicError(
                f"model channel_mults has {len(self.channel_mults)} levels, at most {MAX_LEVELS} are allowed "
                f"(each level halves the resolution: {MAX_LEVELS} levels take {MAX_RESOLUTION} px down to "
                f"{MAX_RESOLUTION >> (MAX_LEVELS - 1)} px)"
            )
        for m in self.channel_mults:
            if not _is_int(m) or m < 1:
                raise EntropicError(
                    f"model channel_mults must hold positive integers, got {m!r} in {list(self.channel_mults)}"
                )
            if self.base_channels * m > MAX_LEVEL_CHANNELS:
                raise EntropicError(
                    f"model base_channels x channel_mults must be at most {MAX_LEVEL_CHANNELS:,} channels per level, "
                    f"got {self.base_channels} x {m} = {self.base_channels * m:,} (a 3x3 convolution at "
                    f"{MAX_LEVEL_CHANNELS:,} channels already holds 151 M weights)"
                )
        if not isinstance(self.attention_resolutions, tuple):
            raise EntropicError(
                f"model attention_resolutions must be a list of integers, got {self.attention_resolutions!r}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise EntropicError(f"model dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.mid_attention, bool):
            raise EntropicError(f"model mid_attention must be true or false, got {self.mid_attention!r}")
        if not isinstance(self.labels, tuple) or not all(isinstance(v, str) and v for v in self.labels):
            raise EntropicError(f"model labels must be a list of non-empty strings, got {self.labels!r}")
        if len(set(self.labels)) != len(self.labels):
            raise EntropicError(f"model labels must be distinct, got {list(self.labels)}")
        if len(self.labels) > MAX_LABELS:
            raise EntropicError(
                f"model labels: {len(self.labels):,} classes, at most {MAX_LABELS:,} (each is an embedding row, "
                "and a store lists every sample's label)"
            )

        halvings = len(self.channel_mults) - 1
        factor = 2**halvings
        if self.resolution % factor != 0:
            sizes = ", ".join(str(r) for r in (32, 64, 128) if r % factor == 0)
            raise EntropicError(
                f"model resolution {self.resolution} is not divisible by {factor} (the U-Net halves it "
                f"{halvings} times, once per channel_mults entry after the first); "
                f"use {sizes or 'a multiple of ' + str(2 * factor)} or fewer channel_mults"
            )
        passes = self.level_resolutions
        for r in self.attention_resolutions:
            if not _is_int(r) or r not in passes:
                raise EntropicError(
                    f"model attention_resolutions contains {r!r}, a resolution the U-Net never works at; "
                    f"it passes through {', '.join(str(p) for p in passes)}"
                )
        for ch in self.level_channels:
            if ch % self.norm_groups != 0:
                raise EntropicError(
                    f"model norm_groups {self.norm_groups} does not divide {ch} channels "
                    f"(base_channels {self.base_channels} x channel_mults); choose a divisor such as 8"
                )
        attn_channels = [c for c, r in zip(self.level_channels, passes) if r in self.attention_resolutions]
        if self.mid_attention:
            attn_channels.append(self.level_channels[-1])
        for ch in attn_channels:
            if ch % self.head_channels != 0:
                raise EntropicError(
                    f"model head_channels {self.head_channels} does not divide {ch} channels of an attention "
                    f"layer; choose head_channels dividing base_channels (e.g. {self.base_channels})"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "UNetConfig":
        """Inverse of ``to_dict``; unknown keys are an EntropicError. The result is validated."""
        return config_from_dict(cls, data, "model config")
