"""Training a U-Net from scratch on a verified dataset folder, into a resumable run directory.

One call, :func:`train`, does the whole job; ``entropic train`` is a thin wrapper around it.

What a training step does (DDPM Algorithm 1, Ho et al. 2020):

* the global batch is the next ``batch_size`` positions of an endless stream made of one
  seeded permutation of the dataset per epoch, so the data order depends only on (seed,
  step) and a resume continues mid-epoch exactly where it stopped;
* images map to [-1, 1] (x / 127.5 - 1) and are optionally flipped left-right;
* t, the noise and the flips come from a generator seeded from (seed, step, rank); the global
  torch generator (dropout) is reseeded from the same numbers. Nothing random carries state
  from one step to the next, which is what makes "N steps, kill, resume to 2N" bit-identical
  to "2N steps" on CPU;
* AdamW with a linear learning-rate warm-up, gradient-norm clipping, then an EMA of the
  weights (decay warmed up as min(decay, (1 + step) / (10 + step))) -- the EMA is the model
  that is saved and sampled;
* optional bf16 autocast (CPU and CUDA), eps or v prediction (``diffusion.model.objective``).

Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) the model is wrapped
in DistributedDataParallel (gloo on CPU, nccl on CUDA); each rank takes a disjoint, equal
slice of every global batch, so the global batch size is what ``batch_size`` says, and only
rank 0 writes anything. The result is an ordinary run directory.

Every setting is checked, the dataset verified and loaded, and an existing run compared with
the request *before* anything is written to ``--out``. A session then first brings the run
directory back to its committed checkpoint (what a kill at any write left: temporaries, an
orphan checkpoint, exports behind the checkpoint, a sheet of an uncommitted step), so the same
command after a SIGKILL gives the uninterrupted result.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from diffusion.common.atomic import atomic_path, atomic_write_json, sha256_bytes
from diffusion.common.energy import EnergyMeter
from diffusion.common.errors import EntropicError
from diffusion.common.machine import cpu_name
from diffusion.common.paths import published_path
from diffusion.data.dataset import ImageDataset, load_dataset
from diffusion.figures.contact_sheet import contact_sheet, to_uint8
from diffusion.model.config import DEFAULT_GUIDANCE
from diffusion.model.execution import AUTOCAST_DEVICES, keep_freed_memory, training_execution
from diffusion.model.objective import schedule_tensors, training_loss
from diffusion.model.samplers import sample
from diffusion.model.schedules import NoiseSchedule
from diffusion.model.unet import UNet, UNetConfig, parameter_count
from diffusion.runs.card import build_card, utc_now
from diffusion.runs.checkpoint import (
    Checkpoint,
    b64,
    read_checkpoint,
    read_pointer,
    remove_sheets_after,
    remove_stale_checkpoints,
    run_exports,
    unb64,
    write_checkpoint,
    write_exports,
)
from diffusion.runs.layout import (
    CARD_JSON,
    CARD_MD,
    CKPT_EMA,
    CKPT_LOSS,
    CKPT_MODEL,
    CKPT_OPTIMIZER,
    CKPT_STATE,
    CONFIG_FILE,
    LOSS_FILE,
    POINTER_FILE,
    RUN_FORMAT,
    RUN_VERSION,
    SAMPLES_DIR,
    STATE_DIR,
    WEIGHTS_FILE,
    inspect_out,
    published_dataset,
    remove_dead_temporaries,
    sample_sheet_path,
)
from diffusion.runs.loss_history import format_loss_history, parse_loss_history
from diffusion.runs.weights import load_tensors, tensors_bytes, weights_metadata
from diffusion.training.devices import (
    Distributed,
    device_name,
    resolve_device,
    run_gpus,
    setup_distributed,
)
from diffusion.training.settings import RunSettings, TrainResult, resolve_settings


def step_seed(seed: int, step: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed for one (seed, step, rank, stream): independent streams, no carried state."""
    state = np.random.SeedSequence([int(seed), int(step), int(rank), int(stream), 0x7EA1]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class DataOrder:
    """The endless stream of dataset indices: epoch e is a seeded permutation of range(n).

    Position p of the stream is ``perm(p // n)[p % n]``; step s uses positions
    [s * batch, (s + 1) * batch). It depends only on (seed, n), so resuming mid-epoch needs
    nothing but the step.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = int(n), int(seed)
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch`` (PCG64 seeded from (seed, epoch))."""
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(epoch), 0xDA7A])))
            self._cache[epoch] = rng.permutation(self.n)
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> np.ndarray:
        """Dataset indices at stream positions start .. start + count - 1."""
        pos = np.arange(start, start + count, dtype=np.int64)
        epochs, offsets = np.divmod(pos, self.n)
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self.permutation(int(e))[offsets[sel]]
        return out


def _optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """AdamW state as tensors ("<param index>.<name>") + JSON (param groups, non-tensor state)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_files(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], where: Path) -> None:
    state: dict[int, dict[str, Any]] = {}
    try:
        for key, value in tensors.items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        for key, value in dict(meta.get("scalars", {})).items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise EntropicError(f"{where}: optimizer state does not fit this model ({err})") from None


def _dataset_record(dataset: ImageDataset, data: Path, out: Path, conditional: bool) -> dict[str, Any]:
    """config.json's ``dataset``: what the run is trained on, named but not located (the path
    is relative to the run directory: in practice the folder's name)."""
    return {
        "path": published_path(data, out),
        "manifest_sha256": dataset.manifest_sha256,
        "images": int(len(dataset.images)),
        "resolution": int(dataset.images.shape[-1]),
        "license_summary": dict(dataset.license_summary),
        "creators": list(dataset.creators),
        "skipped": len(dataset.skipped),
        **({"label_counts": dataset.label_counts} if conditional else {}),
    }


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    params = [p.detach() for p in model.parameters()]
    # ema <- decay * ema + (1 - decay) * param
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for eb, b in zip(ema.buffers(), model.buffers()):
        eb.copy_(b)


class _DeferredInterrupt:
    """While installed, SIGINT sets ``requested`` instead of raising; a second SIGINT raises."""

    def __init__(self, enabled: bool) -> None:
        self.requested = False
        self._installed = enabled and threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self._installed:
            # None means "installed outside Python": the closest we can give back is the default.
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    options: Mapping[str, Any] | None = None,
    *,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume) the run in ``out`` on the dataset folder ``data``.

    ``options``: the settings asked for explicitly (see :func:`resolve_settings`), e.g.
    ``{"resolution": 16, "base_channels": 8, "steps": 200}``. When ``out`` already holds a run,
    training resumes from its last checkpoint up to ``steps``; if it is already there, this
    says so and returns. Refuses (EntropicError, before writing anything): ``out`` being a
    file or a foreign non-empty folder, settings the U-Net or schedule cannot use, a run with
    a different architecture/schedule/settings or dataset manifest, a dataset that does not
    verify, and a corrupt checkpoint or model.safetensors.
    """
    wall_start = time.perf_counter()
    options = dict(options or {})
    data, out = Path(data), Path(out)
    dist = setup_distributed(str(options.get("device", "auto")))
    say = (log or _stderr) if (dist.main and not quiet) else (lambda _m: None)
    try:
        return _train(data, out, options, dist, quiet, say, wall_start)
    finally:
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def _train(
    data: Path, out: Path, options: dict[str, Any], dist: Distributed, quiet: bool, say: Callable[[str], None], wall_start: float
) -> TrainResult:
    # ---- 1. everything that can be refused, before any write --------------------------
    if data.is_dir() and out.resolve().is_relative_to(data.resolve()):
        raise EntropicError(
            f"--out {out} is inside the dataset folder {data}: its sample sheets would become unlisted "
            "images there; put the run directory somewhere else"
        )
    existing = inspect_out(out)
    # A run is pinned to its settings and dataset by its first committed checkpoint; before
    # that nothing was trained, so a new run takes the place of what a killed start left.
    pinned = existing is not None and read_pointer(out) is not None
    if existing is not None and not pinned:
        _refuse_unpinned_model(out)
    options = _with_labels(options, data, existing if pinned else None, out)
    settings = resolve_settings(options, existing if pinned else None, out)
    cfg = settings.train
    if settings.model.channels != 1:
        raise EntropicError(
            f"model channels must be 1 to train (the dataset's images are grayscale), got {settings.model.channels}"
        )
    n_params = check_model_size(settings.model)
    device = resolve_device(cfg.device, dist.local_rank)
    execution = training_execution(device, cfg.bf16, cfg.channels_last)
    settings = replace(settings, train=replace(cfg, bf16=execution.bf16, channels_last=execution.channels_last))
    computed = execution.describe(device, "the run's own" if pinned else None)
    cfg = settings.train
    if cfg.batch_size % dist.world_size:
        raise EntropicError(
            f"--batch-size {cfg.batch_size} does not split evenly over {dist.world_size} processes; "
            f"use a multiple of {dist.world_size}"
        )
    with out_of_memory_as_error(settings, n_params, device):
        return _train_session(data, out, existing if pinned else None, settings, computed, device, dist, quiet, say, wall_start)


def _with_labels(options: dict[str, Any], data: Path, existing: Mapping[str, Any] | None, out: Path) -> dict[str, Any]:
    """``options`` with the model's label vocabulary decided: a new run is conditional when its
    dataset's manifest labels images (every one of them), unless ``unconditional``; a resumed
    run keeps its vocabulary. Label names in sorted order are the embedding's rows."""
    options = dict(options)
    unconditional = bool(options.pop("unconditional", False))
    if existing is not None:
        stored = (existing.get("model") or {}).get("labels") or []
        if unconditional and stored:
            raise EntropicError(
                f"--out {out} holds a model conditioned on labels ({', '.join(map(str, stored))}); leave "
                "--unconditional out to continue it, or choose a new --out"
            )
        return options
    if unconditional:
        options["labels"] = ()
        return options
    from diffusion.data.manifest import read_manifest

    manifest = read_manifest(data)
    if manifest.label_counts and manifest.unlabelled:
        unlabelled = manifest.unlabelled
        shown = ", ".join(unlabelled[:3]) + (f" and {len(unlabelled) - 3} more" if len(unlabelled) > 3 else "")
        raise EntropicError(
            f"{manifest.path}: {len(unlabelled)} of {len(manifest)} images have no label ({shown}); label every "
            "image (entropic dataset init ... --labels-from-folders or --label NAME), or train with --unconditional"
        )
    options["labels"] = tuple(manifest.label_counts)
    return options


def _tidy_run(
    out: Path,
    ckpt: Checkpoint | None,
    config: Mapping[str, Any] | None,
    prediction: str,
    n_params: int,
    hardware: Mapping[str, Any],
    say: Callable[[str], None],
) -> None:
    """Bring ``out`` back to exactly what its committed checkpoint ``ckpt`` (or, if None, no
    checkpoint) says, whatever moment a kill interrupted: temporaries of dead processes, orphan
    checkpoint folders and contact sheets of uncommitted steps go, and exports that are not
    the checkpoint's (a kill after the pointer flip) are rewritten from it, byte for byte.
    """
    for folder in (out, out / SAMPLES_DIR):
        remove_dead_temporaries(folder)
    remove_stale_checkpoints(out)
    remove_sheets_after(out, ckpt.step if ckpt else 0)
    if ckpt is None or config is None:
        return
    weights = tensors_bytes(ckpt.ema, weights_metadata(ckpt.step, prediction))
    card = _checkpoint_card(ckpt, config, out, weights, n_params, hardware)
    rewritten = write_exports(out, run_exports(weights, ckpt.loss_history, card))
    if rewritten:
        say(
            f"{out}: {', '.join(rewritten)} did not match the checkpoint of step {ckpt.step:,} (a session was "
            "killed while writing them); rewritten from it"
        )


def _checkpoint_card(
    ckpt: Checkpoint, config: Mapping[str, Any], out: Path, weights: bytes, n_params: int, hardware: Mapping[str, Any]
) -> dict[str, Any]:
    """The model card of ``ckpt``: the one it keeps, or, for a checkpoint written before cards
    were kept, one rebuilt from its state (with this machine's hardware)."""
    sha = sha256_bytes(weights)
    if ckpt.card is not None:
        card = ckpt.card
        if card["weights"].get("sha256") != sha:  # the weights serialised differently (another safetensors)
            card = {**card, "weights": {**card["weights"], "sha256": sha}}
        return card
    rows = parse_loss_history(ckpt.loss_history, ckpt.path / CKPT_LOSS)
    return build_card(
        config={**config, "dataset": published_dataset(config["dataset"], out)},
        parameters=n_params,
        step=ckpt.step,
        weights_sha256=sha,
        sessions=list(ckpt.state["sessions"]),
        final_loss=rows[-1][1] if rows else None,
        hardware=hardware,
    )


def _refuse_unpinned_model(out: Path) -> None:
    """Refuse a run folder that holds a model but no committed training state (e.g. a published
    folder): training would start again from step 0 and overwrite that model."""
    for name in (WEIGHTS_FILE, CARD_JSON, CARD_MD, LOSS_FILE):
        if (out / name).exists():
            raise EntropicError(
                f"--out {out} holds {name} but no committed training state ({STATE_DIR}/{POINTER_FILE}), so it "
                "cannot be resumed, and training would start again from step 0 over it; choose a new --out"
            )


# Training holds weights, gradients, EMA and AdamW's two moments: 20 bytes per parameter in
# float32, 20 GB at this bound, before the first activation.
MAX_PARAMETERS = 1_000_000_000


def check_model_size(model_config: UNetConfig) -> int:
    """The U-Net's parameter count, counted without allocating it (on torch's meta device);
    an EntropicError naming the sizes above :data:`MAX_PARAMETERS`."""
    with torch.device("meta"):
        n_params = parameter_count(UNet(model_config))
    if n_params > MAX_PARAMETERS:
        c = model_config
        raise EntropicError(
            f"the U-Net of these settings has {n_params:,} parameters (base_channels {c.base_channels}, channel_mults "
            f"{','.join(map(str, c.channel_mults))}, num_res_blocks {c.num_res_blocks}), more than the {MAX_PARAMETERS:,} "
            "training can hold (weights, gradients, EMA and AdamW's two moments take 20 bytes per parameter); "
            "lower --base-channels, --channel-mults or --num-res-blocks"
        )
    return n_params


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure: MemoryError, torch's OutOfMemoryError (CUDA),
    or the RuntimeError of torch's CPU and MPS allocators."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(err, MemoryError) or (oom_type is not None and isinstance(err, oom_type)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


@contextlib.contextmanager
def out_of_memory_as_error(settings: RunSettings, n_params: int, device: torch.device) -> Iterator[None]:
    """Turn an allocation failure inside the block into one EntropicError naming the sizes that
    decide the memory a session needs (the committed checkpoint is untouched by it)."""
    try:
        yield
    except BaseException as err:
        if not is_out_of_memory(err):
            raise
        m, t = settings.model, settings.train
        sheets = f", contact sheets of {t.sample_count}" if t.sample_every else ""
        raise EntropicError(
            f"out of memory on {device.type} (batch {t.batch_size} of {m.resolution}x{m.resolution} px, a U-Net of "
            f"{n_params:,} parameters with widths {','.join(map(str, m.level_channels))}, "
            f"{m.num_res_blocks} ResBlocks per level{sheets}); lower --batch-size, --resolution or --base-channels "
            "(nothing committed is lost; a run without a checkpoint yet takes the new settings in the same --out)"
        ) from None


def _train_session(
    data: Path,
    out: Path,
    existing: dict[str, Any] | None,
    settings: RunSettings,
    computed: str,
    device: torch.device,
    dist: Distributed,
    quiet: bool,
    say: Callable[[str], None],
    wall_start: float,
) -> TrainResult:
    cfg = settings.train
    dataset = load_dataset(data, settings.model.resolution, progress=dist.main and not quiet)
    if existing is not None:
        stored = existing["dataset"].get("manifest_sha256")
        if stored != dataset.manifest_sha256:
            raise EntropicError(
                f"--out {out} was trained on a dataset with manifest sha256 {stored}, but {data}'s manifest is "
                f"{dataset.manifest_sha256}; resume with the same images, or choose a new --out"
            )
        weights = out / WEIGHTS_FILE
        if weights.exists():
            load_tensors(weights)  # a corrupt export is refused, not silently replaced
    ckpt = read_checkpoint(out) if existing is not None else None
    start_step = ckpt.step if ckpt else 0

    schedule = NoiseSchedule.from_config(settings.schedule)
    torch.manual_seed(cfg.seed)  # the initial weights
    model = UNet(settings.model)
    ema = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    loss_rows: list[tuple[int, float, float, float]] = []
    sessions: list[dict[str, Any]] = []
    if ckpt is not None:
        for module, tensors, name in ((model, ckpt.model, CKPT_MODEL), (ema, ckpt.ema, CKPT_EMA)):
            try:
                module.load_state_dict(tensors, strict=True)
            except RuntimeError as err:
                raise EntropicError(f"{ckpt.path / name}: does not fit the model in config.json ({str(err).splitlines()[0]})") from None
        _optimizer_from_files(optimizer, ckpt.optimizer, ckpt.state["optimizer"], ckpt.path / CKPT_OPTIMIZER)
        loss_rows = parse_loss_history(ckpt.loss_history, ckpt.path / CKPT_LOSS)
        sessions = list(ckpt.state["sessions"])
        rng = ckpt.state["rng"]
        if "torch_cpu" in rng:
            try:
                torch.set_rng_state(torch.frombuffer(bytearray(unb64(rng["torch_cpu"])), dtype=torch.uint8))
            except (RuntimeError, ValueError) as err:
                raise EntropicError(f"{ckpt.path / CKPT_STATE}: rng.torch_cpu is not a torch CPU generator state ({err})") from None
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    ema.to(device, memory_format=memory_format).eval().requires_grad_(False)
    # AdamW's moments follow their parameters to the device on load; make sure of it.
    for state in optimizer.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and k != "step":
                state[k] = v.to(device)

    config = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "model": settings.model.to_dict(),
        "schedule": settings.schedule.to_dict(),
        "prediction": settings.prediction,
        "train": cfg.to_dict(),
        # A resumed run keeps its record (an older run's absolute path reduced to the name).
        "dataset": (
            published_dataset(existing["dataset"], out) if existing is not None else _dataset_record(dataset, data, out, settings.model.conditional)
        ),
    }
    n_params = parameter_count(model)
    dev_name = device_name(device)
    hardware = {
        "device": device.type,
        "device_name": dev_name,
        "world_size": dist.world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
    }

    # ---- 2. the run directory (rank 0 only) --------------------------------------------
    dist.barrier()  # every rank has read the old state before rank 0 touches anything
    if dist.main and existing is not None:
        # Before config.json is rewritten: a card rebuilt for an older checkpoint names the
        # config of the session that wrote the checkpoint.
        _tidy_run(out, ckpt, existing, settings.prediction, n_params, hardware, say)
    if start_step >= cfg.steps:
        dist.barrier()
        say(f"{out} is already at step {start_step:,} (--steps {cfg.steps:,}); nothing to do. Pass a larger --steps to train further.")
        return TrainResult(out, start_step, start_step, None, None, 0.0)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        if existing is None:
            _tidy_run(out, None, None, settings.prediction, n_params, hardware, say)
        atomic_write_json(out / CONFIG_FILE, config)
    dist.barrier()

    n = len(dataset.images)
    if cfg.bf16 and device.type not in AUTOCAST_DEVICES:
        say(f"note: bf16 autocast is not used on {device.type}; training in float32")
    say(
        f"{'resuming' if ckpt else 'training'} {out} {'from step ' + format(start_step, ',') + ' ' if ckpt else ''}"
        f"to {cfg.steps:,} steps: {n_params:,} parameters, {n} images at {settings.model.resolution}px, "
        f"batch {cfg.batch_size}, {device.type} ({dev_name})" + (f", {dist.world_size} processes" if dist.world_size > 1 else "")
        + f"; {computed}"
    )

    # ---- 3. training --------------------------------------------------------------------
    net: torch.nn.Module = model
    if dist.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    st = schedule_tensors(schedule, device)
    images = torch.from_numpy(np.ascontiguousarray(dataset.images)).to(device)
    order = DataOrder(n, cfg.seed)
    labels_of = None  # each image's label index, for a conditional model
    if settings.model.conditional:
        labels_of = torch.tensor([settings.model.label_index(label) for label in dataset.labels], device=device)
        null_label = torch.tensor(settings.model.null_label, device=device)
    local_batch = cfg.batch_size // dist.world_size
    shard = slice(dist.rank * local_batch, (dist.rank + 1) * local_batch)
    keep_freed_memory()
    meter = EnergyMeter.start(device.type, dist.world_size, run_gpus(device, dist.world_size))
    session: dict[str, Any] = {
        "started_utc": utc_now(),
        "from_step": start_step,
        "device": device.type,
        "device_name": dev_name,
        "world_size": dist.world_size,
        "torch": torch.__version__,
    }
    train_seconds = 0.0
    autocast_type = device.type if device.type in AUTOCAST_DEVICES else None

    def checkpoint(step: int) -> None:
        wall = time.perf_counter() - wall_start
        done = {
            **session,
            "to_step": step,
            "wall_time_s": round(wall, 3),
            "train_seconds": round(train_seconds, 3),
            "images": (step - start_step) * cfg.batch_size,
            "energy": meter.report(wall),
        }
        all_sessions = sessions + [done]
        opt_tensors, opt_meta = _optimizer_to_files(optimizer)
        rng = {"torch_cpu": b64(torch.get_rng_state().numpy().tobytes())}
        state = {
            "data_position": step * cfg.batch_size,
            "epoch": (step * cfg.batch_size) // n,
            "rng": {**rng, "scheme": "t, noise, flips and dropout are reseeded every step from (seed, step, rank)", "seed": cfg.seed},
            "optimizer": opt_meta,
            "sessions": all_sessions,
        }
        if dist.world_size == 1:
            # The loss-history row in progress, so that a resume writes the row an uninterrupted
            # run writes (under torchrun the other ranks' shares are not here: a resumed row
            # averages the steps since the resume).
            state["loss_window"] = {"steps": window_steps, "sum": float(window_loss.item())}
        csv_text = format_loss_history(loss_rows)
        weights = tensors_bytes(ema.state_dict(), weights_metadata(step, settings.prediction))
        card = build_card(
            config=config,
            parameters=n_params,
            step=step,
            weights_sha256=sha256_bytes(weights),
            sessions=all_sessions,
            final_loss=loss_rows[-1][1] if loss_rows else None,
            hardware=hardware,
        )
        write_checkpoint(out, step, model=model.state_dict(), ema=ema.state_dict(), optimizer=opt_tensors, state=state,
                         loss_history=csv_text, card=card)
        # Exports of the checkpoint just committed; each replaced atomically, and rebuilt from
        # the checkpoint by the next session if a kill lands between them.
        write_exports(out, run_exports(weights, csv_text, card))
        remove_stale_checkpoints(out)

    def sample_sheet(step: int) -> None:
        steps = min(cfg.sample_steps, schedule.timesteps)
        # A conditional model's sheet cycles through its labels, at the default guidance.
        sheet_labels = None
        if settings.model.conditional:
            sheet_labels = torch.arange(cfg.sample_count) % len(settings.model.labels)
        x = sample(ema, schedule, settings.prediction, list(range(cfg.sample_count)), sampler="ddim", steps=steps,
                   batch_size=cfg.sample_count, progress=False, labels=sheet_labels, guidance=DEFAULT_GUIDANCE)
        sheet = contact_sheet(to_uint8(x[:, 0].numpy()), pad=2, scale=max(1, 128 // settings.model.resolution))
        path = sample_sheet_path(out, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".png") as tmp:
            sheet.save(tmp, format="PNG")

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start_step, desc="training", unit="step", dynamic_ncols=True,
               disable=quiet or not dist.main, smoothing=0.05)
    step = start_step
    last_saved = start_step
    window_loss = torch.zeros((), device=device)
    window_steps = 0
    if ckpt is not None and dist.world_size == 1 and "loss_window" in ckpt.state:
        window_steps = ckpt.state["loss_window"]["steps"]
        window_loss += ckpt.state["loss_window"]["sum"]
    window_start = time.perf_counter()
    excluded = 0.0  # seconds of sampling / checkpointing inside the current window
    lr = cfg.lr
    # Ctrl-C is taken at the end of the step in flight (a step cut in half -- weights updated,
    # EMA not yet -- must never be checkpointed); a second Ctrl-C stops at once. Single
    # process only: under torchrun the launcher owns the signals.
    stop = _DeferredInterrupt(enabled=dist.world_size == 1)
    try:
        while step < cfg.steps:
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = torch.from_numpy(order.indices(step * cfg.batch_size, cfg.batch_size)[shard]).to(device)
            x0 = images.index_select(0, idx).unsqueeze(1).float() / 127.5 - 1.0
            gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, dist.rank))
            torch.manual_seed(step_seed(cfg.seed, step, dist.rank, stream=1))  # dropout
            if cfg.flip:
                flips = (torch.rand(local_batch, generator=gen) < 0.5).to(device).view(-1, 1, 1, 1)
                x0 = torch.where(flips, x0.flip(-1), x0)
            x0 = x0.contiguous(memory_format=memory_format)
            labels = None
            if labels_of is not None:
                # The label dropout has its own stream, so t, noise and flips are those of an unconditional run.
                drop = torch.Generator().manual_seed(step_seed(cfg.seed, step, dist.rank, stream=2))
                dropped = (torch.rand(local_batch, generator=drop) < cfg.label_dropout).to(device)
                labels = torch.where(dropped, null_label, labels_of.index_select(0, idx))
            with torch.autocast(autocast_type or "cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and autocast_type is not None):
                loss = training_loss(net, x0, st, gen, prediction=settings.prediction, labels=labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            _ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
            step += 1
            window_loss += loss.detach().float()
            window_steps += 1

            if step % cfg.log_every == 0 or step == cfg.steps:
                if dist.world_size > 1:
                    torch.distributed.all_reduce(window_loss)
                    window_loss /= dist.world_size
                mean_loss = float(window_loss.item()) / window_steps  # .item() waits for the device
                now = time.perf_counter()
                seconds = max(now - window_start - excluded, 1e-9)
                ips = window_steps * cfg.batch_size / seconds
                train_seconds += seconds
                loss_rows.append((step, mean_loss, lr, ips))
                bar.set_postfix_str(f"loss {mean_loss:.4f}, {ips:.1f} img/s", refresh=False)
                window_loss.zero_()
                window_steps, window_start, excluded = 0, now, 0.0
            meter.poll_due()
            bar.update(1)

            if dist.main:
                t0 = time.perf_counter()
                if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
                    sample_sheet(step)
                if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.steps:
                    checkpoint(step)
                    last_saved = step
                excluded += time.perf_counter() - t0
            if stop.requested:
                bar.close()
                if step > last_saved:
                    checkpoint(step)
                _stderr(f"entropic: interrupted at step {step:,}; its checkpoint is saved, run the same command to resume")
                raise KeyboardInterrupt
    finally:
        stop.restore()
    bar.close()
    dist.barrier()
    wall = time.perf_counter() - wall_start
    done = step - start_step
    result = TrainResult(
        out, start_step, step,
        images_per_second=(done * cfg.batch_size / train_seconds) if train_seconds else None,
        final_loss=loss_rows[-1][1] if loss_rows else None,
        wall_time_s=wall,
    )
    say(
        f"done: {out} at step {step:,}, loss {result.final_loss:.4f}, "
        f"{result.images_per_second or 0:.1f} images/s, {wall:.1f} s this session"
    )
    return result
