"""What ``entropic sample`` records, without torch: :class:`RecordSettings` and its vocabularies.

Kept apart from :mod:`diffusion.record` (the recorder, which needs torch) so that the default
piece's recipe, ``entropic render`` and the command line's help pages read them without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusion.common.errors import EntropicError
from diffusion.model.config import SAMPLERS
from diffusion.store.format import DTYPES

__all__ = ["RecordSettings", "parse_shard", "MODEL_BATCH", "PRECISIONS", "COMPUTE_PRECISIONS"]

# Images per model call (diffusion.model.samplers.sample's model_batch) in new stores: fixed, so that
# a sample's numbers never depend on the batch it was drawn in (a store keeps the value it was
# recorded with). 16 rather than 8: 16 images in one call cost 77.7 ms against 93.0 ms in two
# (bfloat16, 2 threads; float32 134 vs 140 ms; benchmarks/RESULTS.md, sampling section 4).
MODEL_BATCH = 16
# Precision of the model's forward pass. bfloat16 (autocast) is about 1.7x faster on CPUs with
# AVX512-BF16 / AMX but rounds the network's activations to 8 significant bits; on the default
# model its finished drawings differ from float32 ones by 0.26 grey levels on average (0.18 % of
# pixels by more than 8 levels; benchmarks/sampling_precision.py). "auto" takes bfloat16 where the
# hardware computes it natively and float32 elsewhere (emulated bfloat16 is slower).
COMPUTE_PRECISIONS = ("float32", "bfloat16")
# Samples in one store at most: its header lists one seed per sample (a million is ~20 MB of
# JSON, read whenever the store is opened) and a million 64-px trajectories of 51 steps in
# float16 are already 418 GB.
MAX_COUNT = 1_000_000
PRECISIONS = ("auto", *COMPUTE_PRECISIONS)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """"K/N" -> (K, N) with 0 <= K < N; None -> None. EntropicError otherwise."""
    if text is None:
        return None
    parts = str(text).split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise EntropicError(f"--shard {text!r} must look like K/N, e.g. 0/4 (shard K of N, counted from 0)") from None
    if n < 1 or not 0 <= k < n:
        raise EntropicError(f"--shard {text}: need 0 <= K < N (shards are numbered 0 .. N-1)")
    return k, n


@dataclass(frozen=True)
class RecordSettings:
    """What to record (the ``entropic sample`` options).

    ``steps``: DDIM steps (None = all T); DDPM always walks all T steps. ``eta``: DDIM noise.
    ``dtype``: stored precision. ``record_x0``: also store the predicted x_0 of every step.
    ``shard``: (K, N) records only i % N == K. ``precision``: the network's forward pass.
    ``model_batch``: images per model call. "auto" / None are decided by :func:`for_store`;
    the store records the values used.
    """

    count: int
    seed: int = 7
    sampler: str = "ddpm"
    steps: int | None = None
    eta: float = 0.0
    batch_size: int = 16
    dtype: str = "float16"
    record_x0: bool = False
    shard: tuple[int, int] | None = None
    precision: str = "auto"
    model_batch: int | None = None

    def validate(self, timesteps: int) -> None:
        """Check every field against a schedule of ``timesteps`` steps (EntropicError naming the option)."""
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise EntropicError(f"--count must be a positive integer, got {self.count!r}")
        if self.count > MAX_COUNT:
            raise EntropicError(
                f"--count {self.count:,} is more than {MAX_COUNT:,}: a store's header lists every sample's seed, "
                "and its arrays hold every step of every sample; record several stores instead"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise EntropicError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if self.sampler not in SAMPLERS:
            raise EntropicError(f"--sampler {self.sampler!r} is unknown; use {' or '.join(SAMPLERS)}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise EntropicError(f"--steps must be a positive integer, got {self.steps!r}")
        if self.sampler == "ddim" and self.steps is not None and self.steps > timesteps:
            raise EntropicError(
                f"--steps {self.steps} is more than the model's {timesteps} diffusion timesteps; "
                f"DDIM can visit at most {timesteps}"
            )
        if not isinstance(self.eta, (int, float)) or not 0.0 <= float(self.eta) <= 1.0:
            raise EntropicError(f"--eta must be in [0, 1], got {self.eta!r}")
        if self.sampler == "ddpm" and self.eta != 0.0:
            raise EntropicError("--eta applies to --sampler ddim only (DDPM's noise is fixed by the schedule)")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise EntropicError(f"--batch-size must be a positive integer, got {self.batch_size!r}")
        if self.dtype not in DTYPES:
            raise EntropicError(f"--dtype {self.dtype!r} is unknown; use one of {', '.join(DTYPES)}")
        if self.precision not in PRECISIONS:
            raise EntropicError(f"--precision {self.precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
        mb = self.model_batch
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, int) or mb < 1):
            raise EntropicError(f"model_batch must be a positive integer, got {mb!r}")
        if self.shard is not None:
            k, n = self.shard
            if n < 1 or not 0 <= k < n:
                raise EntropicError(f"--shard {k}/{n}: need 0 <= K < N")

    def sampler_header(self, timesteps: int) -> dict[str, Any]:
        """The store header's "sampler" entry (part of the store's identity); settings decided by :func:`for_store`."""
        if self.precision == "auto" or self.model_batch is None:
            raise ValueError("decide precision and model_batch (for_store) before writing a header")
        steps = timesteps if self.steps is None else self.steps
        return {
            "name": self.sampler,
            "steps": int(steps),
            "eta": float(self.eta),
            "clip_x0": True,
            "model_batch": int(self.model_batch),
            "precision": self.precision,
            "memory_format": "channels_last",
        }

    def indices(self) -> list[int]:
        """Sample indices this recording is responsible for (its shard of 0 .. count-1)."""
        if self.shard is None:
            return list(range(self.count))
        k, n = self.shard
        return list(range(k, self.count, n))
