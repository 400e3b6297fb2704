"""Sample from a model while recording every step of every sample into a trajectory store.

``record`` drives :func:`diffusion.model.samplers.sample` with an ``on_step`` callback that copies
each frame (x_t, and optionally the predicted x_0) to a writer thread. The writer thread
encodes the frames to the store's dtype and writes them with pwrite while the model computes
the next step; when a batch's last frame has been written it fdatasyncs and marks the batch's
samples complete (:class:`diffusion.store.writer.StoreWriter`). The queue between them is
bounded, so a slow disk slows sampling down instead of filling memory.

With ``record_x0``, the "x0" array holds at step s the model's (clipped) estimate of x_0 made
from frame s (``diffusion.model.samplers.sample``'s ``x0_pred``); at the last step, x_0 itself.

Determinism: sample i of a store is drawn with seed ``sample_seed(seed, i)``
(``diffusion.store``), and the sampler gives every sample its own generator and a
fixed model chunk shape, so sample i depends only on (weights, sampler settings, seed, i):
not on the batch size, on ``--count``, on resuming or on sharding.

Resume and append: recording into an existing store checks that its identity (weights hash,
sampler and settings, seed, dtype, ...) matches, grows it if more samples are asked for, and
samples only the indices that are not yet complete.

Energy: each session that commits samples adds its energy record (measured where a counter is
readable, else an estimate: :mod:`diffusion.common.energy`) to the header's ``energy``, so a
resumed store sums its sessions; the header's ``model`` entry carries the run's training energy
(``training_energy``, from its card). Neither is part of the store's identity.

Sharding: shard (K, N) records the indices i < count with i % N == K into its own store
(same header as the whole recording, plus ``shard``); ``merge_stores`` joins the N stores into
one that is byte-identical to a single-process recording. Interleaved (rather than contiguous)
shards keep every shard's assignment stable when ``--count`` grows later.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from diffusion.common.energy import EnergyMeter
from diffusion.common.energy_sums import accounted
from diffusion.common.errors import EntropicError
from diffusion.common.paths import published_path
from diffusion.model.execution import keep_freed_memory, native_bfloat16
from diffusion.model.guidance import needs_both
from diffusion.model.interpolation import fractions, interpolation_noise
from diffusion.model.samplers import recorded_alphas_cumprod, recorded_timesteps, sample
from diffusion.model.schedules import NoiseSchedule
from diffusion.record_settings import COMPUTE_PRECISIONS, MODEL_BATCH, SAMPLING_LAYOUT, RecordSettings, parse_shard
from diffusion.runs.layout import published_dataset
from diffusion.store.format import HEADER_FILE, StoreSpec, labels_from_sampler, sample_seed
from diffusion.store.writer import FrameEncoder, StoreWriter
from diffusion.training.devices import gpu_uuids

__all__ = [
    "RecordSettings",
    "RecordReport",
    "record",
    "record_run",
    "parse_shard",
    "state_dict_sha256",
    "run_model_info",
    "for_store",
]

# Items in flight between the sampler and the writer thread (each one batch-frame, e.g.
# 16 x 64 x 64 float32 = 256 KiB): enough to absorb an fsync, small enough to bound memory.
QUEUE_ITEMS = 64


def for_store(settings: "RecordSettings", device: torch.device, store: str | os.PathLike) -> "RecordSettings":
    """``settings`` with what was left open decided for a recording into ``store``.

    ``precision="auto"``, ``model_batch=None`` and ``guidance=None`` continue an existing store with
    the values it was recorded with (so a resume on another machine, or after an upgrade that changed a
    default, is not refused); for a new store they become bfloat16 where the hardware computes
    it natively (float32 elsewhere) and :data:`MODEL_BATCH`.
    """
    recorded: dict[str, Any] = {}
    header = Path(store) / HEADER_FILE
    if header.is_file():
        try:
            recorded = dict(json.loads(header.read_text(encoding="utf-8"))["sampler"])
        except (OSError, ValueError, KeyError, TypeError):
            recorded = {}  # the store's own checks report a damaged header
    precision = settings.precision
    if precision == "auto":
        precision = recorded.get("precision")
        if precision not in COMPUTE_PRECISIONS:
            precision = "bfloat16" if native_bfloat16(device) else "float32"
    guidance = settings.guidance
    if guidance is None and settings.labelled and isinstance(recorded.get("guidance"), (int, float)):
        guidance = float(recorded["guidance"])
    model_batch = settings.model_batch
    if model_batch is None:
        model_batch = recorded.get("model_batch")
        if isinstance(model_batch, bool) or not isinstance(model_batch, int) or model_batch < 1:
            model_batch = MODEL_BATCH
    return dataclasses.replace(settings, precision=precision, model_batch=model_batch, guidance=guidance)




@dataclass
class RecordReport:
    """What a recording did."""

    path: Path
    num_samples: int
    recorded: list[int] = field(default_factory=list)
    already_complete: int = 0
    seconds: float = 0.0
    sample_steps: int = 0
    precision: str = ""  # how the network computed: "float32" or "bfloat16 autocast"

    @property
    def sample_steps_per_s(self) -> float:
        return self.sample_steps / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for the command line."""
        if not self.recorded:
            return f"{self.path}: nothing to do, all {self.already_complete} requested samples already complete"
        return (
            f"{self.path}: recorded {len(self.recorded)} samples ({self.already_complete} already complete) in "
            f"{self.seconds:.1f} s, {self.sample_steps_per_s:.1f} sample-steps/s ({self.precision}, "
            f"{SAMPLING_LAYOUT.replace('_', '-')})"
        )


def state_dict_sha256(model: torch.nn.Module) -> str:
    """sha256 over a model's tensors (names, dtypes, shapes, bytes), for models not loaded from a run."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def run_model_info(run: Any, store: str | os.PathLike | None = None) -> dict[str, Any]:
    """The store header's "model" entry for a LoadedRun: weights hash, run name and config, dataset provenance.

    The run is named by its path relative to the ``store`` folder, which in practice is its
    final name (a store is never around the run it samples): a store travels without the
    machine's folders. The run's dataset record is written as this version writes it, so an
    older run's absolute dataset path is reduced to the folder's name here too.
    """
    config = dict(run.config)
    if "dataset" in config:
        config["dataset"] = published_dataset(config["dataset"], run.path)
    dataset = dict(config.get("dataset") or {})
    card_ds = (run.card or {}).get("dataset") or {}
    for key in ("manifest_sha256", "license_summary", "images", "creators"):
        if key not in dataset and key in card_ds:
            dataset[key] = card_ds[key]
    entry = {
        "weights_sha256": run.weights_sha256,
        "run": published_path(run.path, store),
        "training_step": int(getattr(run, "step", 0)),
        "config": config,
        "dataset": dataset,
    }
    # What training these weights cost, so that a video drawn from the store can add it up
    # without the run at hand; absent for a card written before energy was recorded.
    training_energy = (run.card or {}).get("energy")
    if isinstance(training_energy, dict) and training_energy:
        entry["training_energy"] = dict(training_energy)
    return entry


class _WriterThread:
    """Encodes and writes frames handed over by the sampler, commits finished batches."""

    def __init__(self, writer: StoreWriter, on_commit: Callable[[list[int]], None]) -> None:
        self.writer = writer
        self.encoder = FrameEncoder(writer.header)
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
        self.error: BaseException | None = None
        self.on_commit = on_commit
        self.thread = threading.Thread(target=self._run, name="entropic-store-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain without writing: the store keeps only what was committed
            try:
                if item[0] == "frames":
                    _, kind, samples, step, values = item
                    self.writer.write_frames(kind, samples, step, self.encoder.encode(values, step, kind))
                else:
                    _, samples = item
                    self.writer.commit(samples)
                    self.on_commit(samples)
            except BaseException as err:  # reported to the sampling thread
                self.error = err

    def put(self, item: tuple) -> None:
        self.check()
        self.queue.put(item)

    def check(self) -> None:
        if self.error is not None:
            raise _WriterFailed(self.error)

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.check()


class _WriterFailed(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def record(
    out: str | os.PathLike,
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    prediction: str,
    settings: RecordSettings,
    *,
    model_info: dict[str, Any] | None = None,
    schedule_config: dict[str, Any] | None = None,
    progress: bool = True,
    _writer_factory: Callable[..., StoreWriter] | None = None,
) -> RecordReport:
    """Sample ``settings.count`` samples (or this shard's share) into the store ``out``, recording every step.

    Creates the store, or resumes / appends to an existing one of the same recording (anything
    else is refused naming the differing key). ``model_info`` is the header's "model" entry
    (:func:`run_model_info`); by default the hash of the model's tensors. Returns a report;
    raises EntropicError on bad settings and on write failures (e.g. a full disk), leaving the
    store consistent and resumable.
    """
    T = schedule.timesteps
    settings.validate(T)
    settings.check_model(model.config)
    ts = recorded_timesteps(T, settings.sampler, settings.steps)
    settings = for_store(settings, next(model.parameters()).device, out)
    alphas = recorded_alphas_cumprod(schedule, ts)
    res = int(model.config.resolution)
    if model_info is None:
        model_info = {"weights_sha256": state_dict_sha256(model)}
    spec = StoreSpec(
        height=res,
        width=res,
        timesteps=ts,
        alphas_cumprod=alphas,
        dtype=settings.dtype,
        record_x0=settings.record_x0,
        model=model_info,
        schedule=schedule_config,
        prediction=prediction,
        sampler=settings.sampler_header(T),
        seed=settings.seed,
        shard=settings.shard,
        meta={"torch": torch.__version__, "threads": torch.get_num_threads()},
    )
    opener = _writer_factory or StoreWriter.open
    writer = opener(out, spec, settings.count)
    report = RecordReport(path=Path(out), num_samples=int(writer.header["num_samples"]),
                          precision="bfloat16 autocast" if settings.precision == "bfloat16" else "float32")
    try:
        wanted = settings.indices()
        pending = [i for i in wanted if not writer.complete[i]]
        report.already_complete = len(wanted) - len(pending)
        if not pending:
            return report
        meter = _start_meter(next(model.parameters()).device)
        before = int(writer.complete.sum())
        try:
            _sample_into(writer, model, schedule, prediction, settings, pending, len(ts), report, progress, meter)
        except BaseException:
            with contextlib.suppress(Exception):  # the samples are safe; never hide why sampling stopped
                _add_session_energy(writer, meter, before)
            raise
        _add_session_energy(writer, meter, before)
    finally:
        writer.close()
    return report


def _start_meter(device: torch.device) -> EnergyMeter:
    """The energy meter of a recording session on ``device`` (NVML needs the GPU's identity)."""
    gpus: list[str | int] = []
    if device.type == "cuda":
        gpus = gpu_uuids([device.index if device.index is not None else torch.cuda.current_device()])
    return EnergyMeter.start(device.type, 1, gpus)


def _add_session_energy(writer: StoreWriter, meter: EnergyMeter, before: int) -> None:
    """Add this session's energy to the store's header, when it committed samples (their cost is in the store).

    The sum is marked incomplete when the store already held samples that no recorded session
    accounts for (recorded by an entropic that did not measure energy, or by a killed session).
    """
    recorded = int(writer.complete.sum()) - before
    if recorded <= 0:
        return
    counted = accounted(writer.header.get("energy"), "samples")
    writer.add_energy({**meter.report(), "samples": recorded, "device": meter.device_type}, complete=counted >= before)


def _sample_into(
    writer: StoreWriter,
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    prediction: str,
    settings: RecordSettings,
    pending: list[int],
    num_frames: int,
    report: RecordReport,
    progress: bool,
    meter: EnergyMeter,
) -> None:
    from tqdm.auto import tqdm

    pending_arr = np.asarray(pending, dtype=np.int64)
    last = num_frames - 1
    done: list[int] = []
    bar = tqdm(
        total=len(pending) * last,
        disable=not progress,
        unit="step",
        desc=f"recording {len(pending)} samples ({settings.sampler})",
        dynamic_ncols=True,
    )
    bar.set_postfix_str(f"samples 0/{len(pending)}")

    def committed(samples: list[int]) -> None:
        done.extend(samples)  # called on the writer thread; the bar is refreshed from on_step

    wt = _WriterThread(writer, committed)

    def on_step(step: int, idx: np.ndarray, x_t: torch.Tensor, x0_pred: torch.Tensor) -> None:
        samples = pending_arr[idx].tolist()
        # Copy now: the sampler may reuse its tensors; encoding happens on the writer thread.
        wt.put(("frames", "x", samples, step, x_t.detach()[:, 0].to("cpu", torch.float32).numpy().copy()))
        if settings.record_x0:
            wt.put(("frames", "x0", samples, step, x0_pred.detach()[:, 0].to("cpu", torch.float32).numpy().copy()))
        meter.poll_due()
        if step > 0:
            bar.update(len(samples))
        if step == last:
            wt.put(("commit", samples))
            bar.set_postfix_str(f"samples {len(done)}/{len(pending)} saved", refresh=False)

    start = time.perf_counter()
    try:
        sample_recording(model, schedule, prediction, settings, writer.header["sampler"], pending, on_step)
        wt.finish()
        bar.set_postfix_str(f"samples {len(done)}/{len(pending)} saved")
    except _WriterFailed as failed:
        _drain(wt)
        raise _write_error(writer, failed.cause) from None
    except BaseException:
        _drain(wt)  # keep what was committed; the batch in flight is lost and redone on resume
        if wt.error is not None:
            raise _write_error(writer, wt.error) from None
        raise
    finally:
        bar.close()
    report.seconds = time.perf_counter() - start
    report.recorded = sorted(done)
    report.sample_steps = len(done) * last


def sample_recording(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    prediction: str,
    settings: RecordSettings,
    sampler_header: dict[str, Any],
    indices: Sequence[int],
    on_step: Callable[[int, np.ndarray, torch.Tensor, torch.Tensor], None],
) -> None:
    """Draw the samples ``indices`` of a recording exactly as :func:`record` does.

    Same seeds, conditioning, model copy and precision, so the steps ``on_step`` sees (given
    positions in ``indices``) are the recording's, bit for bit on one machine: what
    ``entropic verify`` replays (:mod:`diffusion.replay`). ``settings`` as :func:`for_store`
    decided them; ``sampler_header`` is the store header's "sampler" entry.
    """
    keep_freed_memory()
    positions = np.asarray(indices, dtype=np.int64)
    seeds = [sample_seed(settings.seed, int(i)) for i in positions]
    # The conditioning speaks of store indices; the sampler of positions in its list of seeds.
    conditioning = {
        key: (lambda at, f=value: f(positions[at].tolist())) if callable(value) else value
        for key, value in _conditioning(model.config, settings, sampler_header).items()
    }
    autocast = (
        torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16)
        if settings.precision == "bfloat16"
        else contextlib.nullcontext()
    )
    with autocast:
        sample(
            _sampling_model(model),
            schedule,
            prediction,
            seeds,
            sampler=settings.sampler,
            steps=settings.steps if settings.sampler == "ddim" else None,
            eta=float(settings.eta),
            batch_size=settings.batch_size,
            on_step=on_step,
            progress=False,
            model_batch=int(settings.model_batch),
            **conditioning,
        )


def _conditioning(config: Any, settings: RecordSettings, sampler: dict[str, Any]) -> dict[str, Any]:
    """The ``sample`` arguments that condition a recording: labels, guidance, starting noise.

    Each is a function of the store indices of a batch's samples, built per batch (memory does
    not grow with ``count``). Whether every model call computes both predictions (``both``) is
    decided from all of the recording's samples, so a resumed or sharded sample is computed
    exactly as in one go.
    """
    out: dict[str, Any] = {}
    along = fractions(settings.count) if settings.count > 1 else [0.0]
    shape = (config.channels, config.resolution, config.resolution)
    if settings.interpolate is not None:
        out["initial_noise"] = lambda indices: interpolation_noise(*settings.interpolate, [along[i] for i in indices], shape)
    if not config.conditional:
        return out
    if not settings.labelled:  # every sample of the null class: one plain call per step
        return {**out, "labels": lambda indices: torch.full((len(indices),), config.null_label), "both": False}
    guidance = float(sampler["guidance"])
    if settings.interpolate_labels is not None:
        a, b = (config.label_index(name) for name in settings.interpolate_labels)

        def blend(indices: list[int]) -> torch.Tensor:
            weights = torch.zeros((len(indices), config.null_label + 1))
            for row, i in enumerate(indices):
                weights[row, a] += 1.0 - along[i]
                weights[row, b] += along[i]
            return weights

        both = needs_both(blend([0, settings.count - 1]), guidance, config.null_label)  # the path's two ends
        return {**out, "labels": blend, "guidance": guidance, "both": both}
    # The labels the header records (null where guidance 0 uses none), as the store says them.
    every = torch.tensor([config.label_index(name) for name in labels_from_sampler(sampler, settings.count)])
    both = needs_both(every, guidance, config.null_label)
    return {**out, "labels": lambda indices: every[torch.tensor(indices, dtype=torch.long)], "guidance": guidance,
            "both": both}


def _sampling_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model to sample with: a copy running its activations channels-last when it can.

    Channels-last convolutions are about 1.2x faster on CPU (benchmarks/RESULTS.md); the
    copy leaves the caller's model untouched. The memory format is part of the store's
    identity ("sampler.memory_format"), since it changes the last bits of the results.
    """
    if getattr(model, "channels_last", True):
        return model
    fast = copy.deepcopy(model)
    fast.channels_last = True
    return fast


def _drain(wt: _WriterThread) -> None:
    """Stop the writer thread after the items already queued (no new commits after an error)."""
    try:
        wt.queue.put(None)
        wt.thread.join()
    except BaseException:
        pass


def _write_error(writer: StoreWriter, err: BaseException) -> BaseException:
    done = int(writer.complete.sum())
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return EntropicError(
            f"{writer.path}: disk full while writing; the store is consistent with {done} complete samples — "
            "free some space and re-run the same command to resume"
        )
    if isinstance(err, OSError):
        return EntropicError(
            f"{writer.path}: writing failed ({err.strerror or err}); the store is consistent with {done} complete "
            "samples — re-run the same command to resume"
        )
    return err


def record_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    settings: RecordSettings,
    *,
    progress: bool = True,
) -> RecordReport:
    """Load a run directory (its EMA weights) and :func:`record` from it."""
    from diffusion.runs.load import load_run

    loaded = load_run(run)
    settings.validate(loaded.schedule.timesteps)  # before touching the store
    settings.check_model(loaded.model.config)
    return record(
        out,
        loaded.model,
        loaded.schedule,
        loaded.prediction,
        settings,
        model_info=run_model_info(loaded, out),
        schedule_config=dict(loaded.config.get("schedule") or {}) or None,
        progress=progress,
    )
