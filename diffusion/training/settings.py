"""Training settings: :class:`TrainConfig`, and the rules that decide what a resumed run may change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from diffusion.common.errors import EntropicError
from diffusion.common.validation import config_from_dict, config_to_dict
from diffusion.model.config import DEFAULT_PREDICTION, PREDICTIONS, UNetConfig
from diffusion.model.schedules import MAX_TIMESTEPS, ScheduleConfig
from diffusion.runs.layout import CONFIG_FILE, config_section

DEVICES = ("auto", "cpu", "cuda", "mps")

# Upper bounds of the settings (the reasons are in UPPER_BOUNDS): an absurd value is refused at
# the edge, not met as an out-of-memory failure or a wrongly sorted folder name later.
MAX_STEPS = 9_999_999
MAX_BATCH_SIZE = 4096
MAX_SAMPLE_COUNT = 1024
MAX_SEED = 2**63 - 1


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


# (setting, upper bound, why): checked by TrainConfig.validate after the lower bounds.
UPPER_BOUNDS = (
    *((name, MAX_STEPS, "checkpoint folders and contact sheets name their step with 7 digits")
      for name in ("steps", "warmup", "sample_every", "checkpoint_every", "log_every")),
    ("batch_size", MAX_BATCH_SIZE, "a step holds the activations of the whole batch in memory at once"),
    ("sample_count", MAX_SAMPLE_COUNT, "a contact sheet samples all its images in one batch"),
    ("sample_steps", MAX_TIMESTEPS, "no noise schedule has more steps"),
    ("seed", MAX_SEED, "torch seeds are 64-bit"),
)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings, as written under "train" in config.json. ``validate()`` once at the edge.

    steps: total optimizer steps the run should reach (a resume continues up to it).
    batch_size: global batch (split evenly across ranks under torchrun).
    lr, warmup: AdamW learning rate, reached linearly over ``warmup`` steps.
    weight_decay: AdamW decoupled weight decay.
    ema_decay: decay of the exponential moving average of the weights (the saved model).
    grad_clip: max global gradient norm (0 disables clipping).
    flip: random left-right flips of training images.
    bf16: bfloat16 autocast for the forward pass (CPU and CUDA).
    channels_last: keep weights and activations in NHWC memory.
        Both change rounding, so they are part of the run's settings. None (the default) means
        "choose for the hardware" when the run starts (``diffusion.model.execution``); a run's
        config.json always holds the choice made.
    seed: seeds the initial weights, the data order, t, the noise and the flips.
    label_dropout: probability of training a sample with the null class instead of its label
        (a conditional model only), so that one network also predicts without a label, as
        classifier-free guidance needs (Ho & Salimans 2022 found 0.1 to 0.2 best).
    sample_every: write a contact sheet of EMA samples every N steps (0: never).
    sample_count, sample_steps: samples per sheet (fixed seeds 0..count-1) and DDIM steps.
    checkpoint_every: write a resumable checkpoint every N steps (and always at the end).
    log_every: add a row to loss_history.csv every N steps (mean loss over those steps).
    device: "auto" (cuda > mps > cpu), "cpu", "cuda" or "mps".
    """

    steps: int = 20000
    batch_size: int = 32
    lr: float = 2e-4
    warmup: int = 500
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    flip: bool = True
    bf16: bool | None = None
    channels_last: bool | None = None
    seed: int = 0
    label_dropout: float = 0.1
    sample_every: int = 1000
    sample_count: int = 16
    sample_steps: int = 50
    checkpoint_every: int = 500
    log_every: int = 10
    device: str = "auto"

    # Keys that config.json files written before they existed lack (diffusion.runs.layout.config_section):
    # those runs are unconditional, where label dropout does nothing.
    ADDED_LATER: ClassVar[tuple[str, ...]] = ("label_dropout",)

    def validate(self) -> None:
        """Raise EntropicError naming the first bad setting and its accepted range.

        Every size has an upper bound (see the ``MAX_*`` constants), so that an absurd value is
        refused here, with the reason, and not as an out-of-memory failure minutes later.
        """
        positive = ("steps", "batch_size", "sample_count", "log_every")
        non_negative = ("warmup", "seed", "sample_every", "checkpoint_every")
        for name in positive:
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise EntropicError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in non_negative:
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise EntropicError(f"--{name.replace('_', '-')} must be an integer >= 0, got {v!r}")
        if not _is_int(self.sample_steps) or self.sample_steps < 2:
            raise EntropicError(f"--sample-steps must be an integer >= 2, got {self.sample_steps!r}")
        for name, bound, why in UPPER_BOUNDS:
            v = getattr(self, name)
            if v > bound:
                raise EntropicError(f"--{name.replace('_', '-')} must be at most {bound:,}, got {v:,} ({why})")
        if not _is_num(self.lr) or not 0 < self.lr < 1:
            raise EntropicError(f"--lr must be a number in (0, 1), got {self.lr!r} (2e-4 is a good start)")
        if not _is_num(self.weight_decay) or self.weight_decay < 0:
            raise EntropicError(f"--weight-decay must be a number >= 0, got {self.weight_decay!r}")
        if not _is_num(self.ema_decay) or not 0 <= self.ema_decay < 1:
            raise EntropicError(f"--ema-decay must be a number in [0, 1), got {self.ema_decay!r} (0.999 is usual)")
        if not _is_num(self.label_dropout) or not 0 <= self.label_dropout < 1:
            raise EntropicError(
                f"--label-dropout must be a number in [0, 1), got {self.label_dropout!r} (0.1 is usual; "
                "0 trains no unconditional prediction, so guidance has nothing to push against)"
            )
        if not _is_num(self.grad_clip) or self.grad_clip < 0:
            raise EntropicError(f"--grad-clip must be a number >= 0 (0 disables it), got {self.grad_clip!r}")
        for name, may_be_open in (("flip", False), ("bf16", True), ("channels_last", True)):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (may_be_open and value is None):
                raise EntropicError(f"{name} must be true or false, got {value!r}")
        if self.device not in DEVICES:
            raise EntropicError(f"--device {self.device!r} is unknown; use one of {', '.join(DEVICES)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of ``to_dict``; unknown keys are an EntropicError. Validated."""
        return config_from_dict(cls, data, "train setting")


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides what a run trains: architecture, forward process, target, settings."""

    model: UNetConfig
    schedule: ScheduleConfig
    prediction: str
    train: TrainConfig


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` did."""

    run: Path
    start_step: int
    step: int
    images_per_second: float | None
    final_loss: float | None
    wall_time_s: float

    @property
    def trained_steps(self) -> int:
        return self.step - self.start_step


MODEL_KEYS = tuple(f.name for f in fields(UNetConfig))
# Option name -> ScheduleConfig field ("--schedule cosine" is the schedule's kind).
SCHEDULE_KEYS = {"schedule": "kind", "timesteps": "timesteps", "beta_start": "beta_start", "beta_end": "beta_end"}
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
# Settings a resume may change: they decide how long and how the run is watched, not the
# weights it computes (the device changes rounding only; an exact resume needs the same one).
CHANGEABLE_ON_RESUME = frozenset({"steps", "device", "sample_every", "sample_count", "sample_steps", "checkpoint_every", "log_every"})


def _norm(value: Any) -> Any:
    """Comparable form of a setting (JSON lists and config tuples compare equal)."""
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def resolve_settings(options: Mapping[str, Any], existing: Mapping[str, Any] | None = None, out: Any = "RUN") -> RunSettings:
    """Turn the options given on the command line into validated settings.

    ``options`` holds only what the user asked for explicitly, keyed by UNetConfig field
    (resolution, base_channels, ...), "schedule"/"timesteps"/"beta_start"/"beta_end",
    "prediction", or TrainConfig field. For a new run the rest are defaults; when resuming
    (``existing`` = the run's config.json) the rest come from the run, and an explicit option
    that differs from the run is an EntropicError naming the key, except the few settings in
    ``CHANGEABLE_ON_RESUME``.
    """
    known = set(MODEL_KEYS) | set(SCHEDULE_KEYS) | {"prediction"} | set(TRAIN_KEYS)
    unknown = sorted(set(options) - known)
    if unknown:
        raise EntropicError(f"unknown training option(s) {', '.join(unknown)}")
    model_opts = {k: options[k] for k in MODEL_KEYS if k in options}
    sched_opts = {SCHEDULE_KEYS[k]: options[k] for k in SCHEDULE_KEYS if k in options}
    train_opts = {k: options[k] for k in TRAIN_KEYS if k in options}
    for key in ("channel_mults", "attention_resolutions"):
        if key in model_opts and isinstance(model_opts[key], list):
            model_opts[key] = tuple(model_opts[key])

    if existing is None:
        try:
            model = UNetConfig(**model_opts)
        except TypeError as err:
            raise EntropicError(f"bad model option: {err}") from None
        model.validate()
        schedule = ScheduleConfig(**sched_opts)
        schedule.validate()
        prediction = options.get("prediction", DEFAULT_PREDICTION)
        train = TrainConfig(**train_opts)
    else:
        where = Path(str(out)) / CONFIG_FILE
        model = config_section(existing, "model", UNetConfig, where)
        schedule = config_section(existing, "schedule", ScheduleConfig, where)
        base = config_section(existing, "train", TrainConfig, where)
        prediction = existing.get("prediction")
        if prediction not in PREDICTIONS:
            raise EntropicError(f"{where}: prediction {prediction!r} is unknown (eps or v)")

        def refuse(key: str, stored: Any, asked: Any, what: str) -> None:
            if _norm(stored) != _norm(asked):
                raise EntropicError(
                    f"--out {out} holds a {what} with {key}={_show(stored)}; this command asks for {_show(asked)} "
                    f"(leave --{key.replace('_', '-')} out to continue that run, or choose a new --out)"
                )

        for key, value in model_opts.items():
            refuse(key, getattr(model, key), value, "model")
        for opt, field_name in SCHEDULE_KEYS.items():
            if opt in options:
                refuse(opt, getattr(schedule, field_name), options[opt], "model")
        if "prediction" in options:
            refuse("prediction", prediction, options["prediction"], "model")
        for key, value in train_opts.items():
            if key not in CHANGEABLE_ON_RESUME:
                refuse(key, getattr(base, key), value, "run trained")
        # The device is the machine's business, not the run's: "auto" unless asked.
        train = replace(base, **{"device": "auto", **{k: v for k, v in train_opts.items() if k in CHANGEABLE_ON_RESUME}})
    if prediction not in PREDICTIONS:
        raise EntropicError(f"--prediction {prediction!r} is unknown; use eps or v")
    train.validate()
    return RunSettings(model, schedule, prediction, train)
