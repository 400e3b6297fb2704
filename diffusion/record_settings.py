"""What ``entropic sample`` records, without torch: :class:`RecordSettings` and its vocabularies.

Kept apart from :mod:`diffusion.record` (the recorder, which needs torch) so that the default
piece's recipe, ``entropic render`` and the command line's help pages read them without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusion.common.errors import EntropicError
from diffusion.model.config import DEFAULT_GUIDANCE, SAMPLERS, UNetConfig, check_guidance
from diffusion.store.format import DTYPES

__all__ = [
    "RecordSettings",
    "parse_shard",
    "parse_label_mix",
    "parse_pair",
    "CONDITIONING",
    "MODEL_BATCH",
    "PRECISIONS",
    "COMPUTE_PRECISIONS",
]

# Images per model call (diffusion.model.samplers.sample's model_batch) in new stores: fixed, so that
# a sample's numbers never depend on the batch it was drawn in (a store keeps the value it was
# recorded with). 16 rather than 8: 16 images in one call cost 77.7 ms against 93.0 ms in two
# (bfloat16, 2 threads; float32 134 vs 140 ms; benchmarks/RESULTS.md, sampling section 4).
MODEL_BATCH = 16
# The activations' layout while sampling, on every device (why: diffusion.model.execution).
SAMPLING_LAYOUT = "channels_last"
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


def _count(text: str) -> int | None:
    """An ASCII decimal integer, or None (``"²".isdigit()`` is true, but int() refuses it)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdecimal() else None


def parse_label_mix(text: str | None) -> tuple[tuple[str, int], ...] | None:
    """"greek:72,latin:72" -> (("greek", 72), ("latin", 72)); None -> None. EntropicError otherwise."""
    if text is None:
        return None
    mix: list[tuple[str, int]] = []
    for part in str(text).split(","):
        name, sep, number = part.rpartition(":")
        count = _count(number)
        if not sep or not name.strip() or count is None or count < 1:
            raise EntropicError(
                f"--labels {text!r} must list LABEL:COUNT pairs with positive counts, e.g. greek:72,latin:72"
            )
        mix.append((name.strip(), count))
    return tuple(mix)


def parse_pair(text: str | None, option: str, kind: type = str) -> tuple[Any, Any] | None:
    """"A:B" -> (A, B) as ``kind`` (str, or int: non-negative); None -> None. EntropicError otherwise."""
    if text is None:
        return None
    a, sep, b = str(text).partition(":")
    example = "7:8" if kind is int else "greek:latin"
    pair = (_count(a), _count(b)) if kind is int else (a.strip() or None, b.strip() or None)
    if not sep or None in pair:
        raise EntropicError(f"{option} {text!r} must look like A:B, e.g. {example}")
    return pair


# The RecordSettings fields that steer a conditional model (absent: an unconditional recording).
CONDITIONING = ("label", "label_mix", "guidance", "interpolate", "interpolate_labels")
# Seeds of --interpolate are torch generator seeds, as a store's seeds.values lists them.
MAX_GENERATOR_SEED = 2**63 - 1


@dataclass(frozen=True)
class RecordSettings:
    """What to record (the ``entropic sample`` options).

    ``steps``: DDIM steps (None = all T); DDPM always walks all T steps. ``eta``: DDIM noise.
    ``dtype``: stored precision. ``record_x0``: also store the predicted x_0 of every step.
    ``shard``: (K, N) records only i % N == K. ``precision``: the network's forward pass.
    ``model_batch``: images per model call. "auto" / None are decided by :func:`for_store`;
    the store records the values used.

    Conditioning (a model trained with labels): ``label`` steers every sample; ``label_mix``
    ((label, count), ...) steers the first count samples to the first label, the next to the
    second, and so on (the counts add up to ``count``); neither: no label (the null class).
    ``guidance`` is the classifier-free guidance scale (``diffusion.model.guidance``; None:
    an existing store's own, else :data:`DEFAULT_GUIDANCE`, decided by :func:`for_store`).
    ``interpolate`` (seed A, seed B) starts sample i from the spherical interpolation of the
    two seeds' noise at i / (count - 1); ``interpolate_labels`` (A, B) blends the two labels'
    embeddings along the same path.
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
    label: str | None = None
    label_mix: tuple[tuple[str, int], ...] | None = None
    guidance: float | None = None
    interpolate: tuple[int, int] | None = None
    interpolate_labels: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        # JSON (a rolling store's recipe) gives lists; hold tuples so settings compare by value.
        def tuples(value: Any) -> Any:
            return tuple(tuples(v) for v in value) if isinstance(value, list) else value

        for name in ("shard", "label_mix", "interpolate", "interpolate_labels"):
            object.__setattr__(self, name, tuples(getattr(self, name)))

    @property
    def asked_labels(self) -> list[str]:
        """Every label name these settings give, in the order given (repeats kept)."""
        names = [] if self.label is None else [self.label]
        return names + [pair[0] for pair in self.label_mix or ()] + list(self.interpolate_labels or ())

    @property
    def labelled(self) -> bool:
        """Whether any sample is steered by a label (else every sample is of the null class)."""
        return any(v is not None for v in (self.label, self.label_mix, self.interpolate_labels))

    @property
    def conditioned(self) -> bool:
        """Whether these settings ask for labels or guidance (a conditional model only)."""
        return self.labelled or self.guidance is not None

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
        self._validate_conditioning()

    def _validate_conditioning(self) -> None:
        given = [name for name, v in (("--label", self.label), ("--labels", self.label_mix),
                                      ("--interpolate-labels", self.interpolate_labels)) if v is not None]
        if len(given) > 1:
            raise EntropicError(f"give one of {', '.join(given)}, not several")
        for name in self.asked_labels:
            if not isinstance(name, str) or not name:
                raise EntropicError(f"a label must be a non-empty string, got {name!r}")
        if self.label_mix is not None:
            if any(len(pair) != 2 or isinstance(pair[1], bool) or not isinstance(pair[1], int) or pair[1] < 1
                   for pair in self.label_mix):
                raise EntropicError(f"--labels must pair each label with a positive count, got {self.label_mix!r}")
            total = sum(n for _, n in self.label_mix)
            if total != self.count:
                listed = " + ".join(str(n) for _, n in self.label_mix)
                raise EntropicError(
                    f"--labels counts add up to {total} ({listed}) but --count is {self.count}; "
                    "make them agree (or leave --count out)"
                )
            names = [name for name, _ in self.label_mix]
            if len(set(names)) != len(names):
                raise EntropicError(f"--labels names a label twice ({', '.join(names)})")
        if self.guidance is not None:
            check_guidance(self.guidance)
            if not self.labelled:
                raise EntropicError("--guidance steers samples towards their label: give --label, --labels or "
                                    "--interpolate-labels with it")
        for option, pair in (("--interpolate", self.interpolate), ("--interpolate-labels", self.interpolate_labels)):
            if pair is not None and self.count < 2:
                raise EntropicError(f"{option} needs --count 2 or more (the first and last samples are its two ends)")
        if self.interpolate is not None:
            if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_GENERATOR_SEED
                   for v in self.interpolate):
                raise EntropicError(
                    f"--interpolate seeds must be integers in 0..{MAX_GENERATOR_SEED:,} (a store's seeds.values), "
                    f"got {self.interpolate!r}"
                )
            if self.sampler != "ddim" or self.eta != 0.0:
                raise EntropicError(
                    "--interpolate needs --sampler ddim with --eta 0: only a deterministic sampler carries the "
                    "interpolated noise smoothly to the drawings"
                )

    def check_model(self, model: UNetConfig) -> None:
        """Check the conditioning against the model: labels it knows, none for an unconditional one."""
        if not model.conditional:
            if self.conditioned:
                raise EntropicError(
                    "this model was trained without labels (unconditional): --label, --labels, "
                    "--interpolate-labels and --guidance do not apply to it"
                )
            return
        for name in self.asked_labels:
            model.label_index(name)

    def conditioning_header(self) -> dict[str, Any]:
        """The sampler entries of a recording that steers by labels (part of the store's identity;
        :func:`diffusion.store.format.labels_from_sampler` reads each sample's label from them)."""
        if not self.labelled:
            return {}
        entry: dict[str, Any] = {"guidance": float(DEFAULT_GUIDANCE if self.guidance is None else self.guidance)}
        if self.label is not None:
            entry["label"] = self.label
        if self.label_mix is not None:
            entry["labels"] = [[name, int(n)] for name, n in self.label_mix]
        if self.interpolate_labels is not None:
            entry["interpolate_labels"] = list(self.interpolate_labels)
        return entry

    def sampler_header(self, timesteps: int) -> dict[str, Any]:
        """The store header's "sampler" entry (part of the store's identity); settings decided by :func:`for_store`."""
        if self.precision == "auto" or self.model_batch is None:
            raise ValueError("decide precision and model_batch (for_store) before writing a header")
        steps = timesteps if self.steps is None else self.steps
        header = {
            "name": self.sampler,
            "steps": int(steps),
            "eta": float(self.eta),
            "clip_x0": True,
            "model_batch": int(self.model_batch),
            "precision": self.precision,
            "memory_format": SAMPLING_LAYOUT,
        }
        header.update(self.conditioning_header())
        if self.interpolate is not None or self.interpolate_labels is not None:
            header["interpolate_count"] = int(self.count)  # the path's points depend on it
        if self.interpolate is not None:
            header["interpolate"] = [int(v) for v in self.interpolate]
        return header

    def indices(self) -> list[int]:
        """Sample indices this recording is responsible for (its shard of 0 .. count-1)."""
        if self.shard is None:
            return list(range(self.count))
        k, n = self.shard
        return list(range(k, self.count, n))
