"""Training, the run directory, the model card, exact resume, bad inputs and torchrun.

Everything runs at 16 px with a ~50k-parameter U-Net on 16 synthetic images, one torch
thread, so the file stays well under a minute on a shared 2-core machine. The command-line
cases run as real subprocesses (in parallel: each one pays the torch import).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.figures.contact_sheet import contact_sheet, to_uint8
from diffusion.common.errors import EntropicError
from diffusion.data.manifest import init_manifest
from diffusion.model.execution import native_bfloat16
from diffusion.runs.describe import describe_run
from diffusion.runs.load import load_run
from diffusion.model.schedules import ScheduleConfig
from diffusion.training.loop import DataOrder, step_seed, train
from diffusion.training.settings import TrainConfig, resolve_settings
from diffusion.model.unet import UNet, UNetConfig, parameter_count

ROOT = Path(__file__).resolve().parents[3]

# A tiny U-Net: two levels (16, 8 px), attention at 8 px, dropout on so the dropout RNG is
# part of what exact resume must reproduce.
TINY = {
    "resolution": 16,
    "base_channels": 8,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (8,),
    "head_channels": 8,
    "dropout": 0.1,
    "batch_size": 8,
    "warmup": 5,
    "log_every": 2,
    "sample_every": 0,
    "checkpoint_every": 3,
}
TINY_CLI = [
    "--resolution", "16", "--base-channels", "8", "--channel-mults", "1,2", "--num-res-blocks", "1",
    "--attention-resolutions", "8", "--head-channels", "8", "--batch-size", "8", "--sample-every", "0",
    "--checkpoint-every", "2",
]  # fmt: skip


def _make_images(folder: Path, count: int = 16, size: int = 20, seed: int = 0) -> None:
    """Bars and blobs on black, a few sizes and modes (the loader makes them 16 px gray)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        a = np.zeros((size, size), np.uint8)
        x = int(rng.integers(1, size - 7))
        a[3 : size - 3, x : x + 6] = 255
        if i % 2:
            a = a.T.copy()
        Image.fromarray(a).save(folder / f"img{i:02d}.png")


@pytest.fixture(scope="module")
def train_runs(train_data, tmp_path_factory) -> dict[str, Path]:
    """A straight 12-step run, and a 6-step run resumed to 12 in a second call."""
    base = tmp_path_factory.mktemp("runs")
    straight, split = base / "straight", base / "split"
    first = train(train_data, straight, {**TINY, "steps": 12, "sample_every": 6, "sample_count": 4, "sample_steps": 3}, quiet=True)
    assert (first.start_step, first.step) == (0, 12)
    train(train_data, split, {**TINY, "steps": 6}, quiet=True)
    resumed = train(train_data, split, {"steps": 12}, quiet=True)  # other settings come from the run
    assert (resumed.start_step, resumed.step) == (6, 12)
    return {"straight": straight, "split": split}


def _snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file under ``path`` with its bytes (None if ``path`` does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- exact resume


def test_resume_is_bit_identical_to_one_straight_run(train_runs):
    straight, split = train_runs["straight"], train_runs["split"]
    assert (straight / "model.safetensors").read_bytes() == (split / "model.safetensors").read_bytes()
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a = (straight / "training_state" / "step_0000012" / name).read_bytes()
        b = (split / "training_state" / "step_0000012" / name).read_bytes()
        assert a == b, name
    losses = lambda run: [line.split(",")[:3] for line in (run / "loss_history.csv").read_text().splitlines()]  # noqa: E731
    assert losses(straight) == losses(split)
    # Training moved the weights away from their initialisation.
    init = UNet(UNetConfig.from_dict(json.loads((split / "config.json").read_text())["model"]))
    trained = load_run(split).model
    assert any(not torch.equal(a, b) for a, b in zip(init.state_dict().values(), trained.state_dict().values()))


def test_resumed_card_accumulates_sessions(train_runs):
    card = json.loads((train_runs["split"] / "model_card.json").read_text())
    sessions = card["training"]["sessions"]
    assert [(s["from_step"], s["to_step"]) for s in sessions] == [(0, 6), (6, 12)]
    assert card["training"]["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in sessions), abs=0.01)
    assert card["energy"]["joules"] == pytest.approx(sum(s["energy"]["joules"] for s in sessions), abs=0.01)


# ----------------------------------------------------------------------------- run directory


def test_run_directory_layout_config_and_card(train_runs, train_data):
    run = train_runs["straight"]
    files = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert files == {
        "config.json", "model.safetensors", "model_card.json", "model_card.md", "loss_history.csv",
        "samples/step_0000006.png", "samples/step_0000012.png", "training_state/checkpoint.json",
        *(f"training_state/step_0000012/{n}" for n in
          ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.json", "loss_history.csv",
           "model_card.json")),
    }  # fmt: skip  (older checkpoints were removed; nothing temporary left)

    config = json.loads((run / "config.json").read_text())
    assert config["format"] == "entropic-run" and config["version"] == 1
    assert UNetConfig.from_dict(config["model"]).base_channels == 8
    assert ScheduleConfig.from_dict(config["schedule"]) == ScheduleConfig()
    assert config["prediction"] == "v" and config["train"]["steps"] == 12  # the default
    manifest_sha = json.loads(json.dumps(config["dataset"]))["manifest_sha256"]
    from diffusion.data.manifest import manifest_sha256

    assert manifest_sha == manifest_sha256(train_data)
    assert json.loads((run / "training_state" / "checkpoint.json").read_text())["step"] == 12

    card = json.loads((run / "model_card.json").read_text())
    assert card["dataset"]["manifest_sha256"] == manifest_sha
    assert card["dataset"]["license_summary"] == {"CC0-1.0": 16}
    assert card["dataset"]["creators"] == ["Test Artist"] and card["dataset"]["images"] == 16
    assert card["model"]["parameters"] == parameter_count(UNet(UNetConfig.from_dict(config["model"])))
    assert card["model"]["config"] == config["model"]
    assert card["training"]["steps"] == 12 and card["training"]["images_seen"] == 96
    assert card["training"]["wall_time_s"] > 0 and card["training"]["images_per_second"] > 0
    assert card["hardware"]["device"] == "cpu" and card["hardware"]["torch"] == torch.__version__
    assert card["hardware"]["device_name"]
    energy = card["energy"]
    assert energy["kind"] in ("measured", "estimate") and energy["joules"] > 0
    if energy["kind"] == "estimate":
        assert any("assumed" in s and " W " in s for s in energy["sources"])
    assert card["weights"]["sha256"] == load_run(run).weights_sha256

    md = (run / "model_card.md").read_text()
    for fact in (manifest_sha, "CC0-1.0 (16)", "Test Artist", f"{card['model']['parameters']:,} parameters", "Energy:"):
        assert fact in md
    assert ("estimate" in md) == (energy["kind"] == "estimate")

    rows = (run / "loss_history.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,images_per_s"
    assert [int(r.split(",")[0]) for r in rows[1:]] == [2, 4, 6, 8, 10, 12]
    assert all(float(r.split(",")[3]) > 0 for r in rows[1:])

    sheet = Image.open(run / "samples" / "step_0000012.png")
    assert sheet.mode == "L" and sheet.size == (2 + 2 * (16 * 8 + 2),) * 2  # 2x2 tiles, 8x scale, pad 2


def test_config_names_the_dataset_and_an_older_runs_absolute_path_resumes_into_the_name(train_runs, train_data, tmp_path):
    config = json.loads((train_runs["straight"] / "config.json").read_text())
    assert config["dataset"]["path"] == train_data.name  # named, not located: the run is published as it is
    # An older version recorded the absolute path; such a run still resumes, and says only the name from then on.
    run = tmp_path / "old"
    shutil.copytree(train_runs["straight"], run)
    config["dataset"]["path"] = "/home/someone/work/drawings"
    (run / "config.json").write_text(json.dumps(config))
    result = train(train_data, run, {"steps": 13}, quiet=True)
    assert (result.start_step, result.step) == (12, 13)
    for name in ("config.json", "model_card.json", "model_card.md"):
        text = (run / name).read_text()
        assert "/home/someone" not in text and str(tmp_path) not in text, name
    assert json.loads((run / "model_card.json").read_text())["dataset"]["path"] == "drawings"


def test_load_run_gives_an_eval_model_that_samples(train_runs):
    from diffusion.model.samplers import sample

    loaded = load_run(train_runs["straight"])
    assert not loaded.model.training and loaded.prediction == "v" and loaded.step == 12
    assert loaded.unet_config.resolution == 16 and loaded.schedule.timesteps == 1000
    x = sample(loaded.model, loaded.schedule, loaded.prediction, [0, 1], sampler="ddim", steps=3, progress=False)
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()


def test_describe_run_says_what_and_how(train_runs):
    text = describe_run(train_runs["split"])
    card = json.loads((train_runs["split"] / "model_card.json").read_text())
    for fact in ("12 of 12", "base_channels 8", card["weights"]["sha256"], card["dataset"]["manifest_sha256"],
                 "CC0-1.0 (16)", "Test Artist", "2 session(s)", "energy"):  # fmt: skip
        assert fact in text


def test_steps_already_reached_changes_nothing(train_runs, train_data):
    run = train_runs["straight"]
    before = _snapshot(run)
    result = train(train_data, run, {"steps": 10}, quiet=True)
    assert result.step == result.start_step == 12
    assert _snapshot(run) == before


def test_resume_ignores_and_cleans_a_half_written_checkpoint(train_data, tmp_path):
    """A kill during a checkpoint leaves a temp folder or an orphan folder the pointer never saw."""
    run = tmp_path / "run"
    train(train_data, run, {**TINY, "steps": 3}, quiet=True)
    state = run / "training_state"
    (state / ".step_0000005.999.tmp").mkdir()
    (state / ".step_0000005.999.tmp" / "model.safetensors").write_bytes(b"half")
    shutil.copytree(state / "step_0000003", state / "step_0000005")
    (state / "step_0000005" / "ema.safetensors").write_bytes(b"truncated")
    result = train(train_data, run, {"steps": 4}, quiet=True)
    assert (result.start_step, result.step) == (3, 4)
    assert sorted(p.name for p in state.iterdir()) == ["checkpoint.json", "step_0000004"]


def test_run_killed_before_its_first_checkpoint_starts_over_exactly(train_data, tmp_path):
    straight = tmp_path / "straight"
    train(train_data, straight, {**TINY, "steps": 2}, quiet=True)
    early = tmp_path / "early"
    early.mkdir()
    shutil.copy(straight / "config.json", early / "config.json")  # all a run has before step 1
    with pytest.raises(EntropicError, match="no model.safetensors"):
        load_run(early)
    assert train(train_data, early, {**TINY, "steps": 2}, quiet=True).start_step == 0
    assert (early / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()


def test_bf16_autocast_and_eps_prediction(train_data, tmp_path):
    settings = {**TINY, "steps": 2, "prediction": "eps", "schedule": "linear", "checkpoint_every": 0}
    train(train_data, tmp_path / "bf16", {**settings, "bf16": True}, quiet=True)
    train(train_data, tmp_path / "fp32", {**settings, "bf16": False}, quiet=True)
    loaded = load_run(tmp_path / "bf16")
    assert loaded.prediction == "eps" and loaded.schedule_config.kind == "linear"
    assert loaded.config["train"]["bf16"] is True
    first_loss = lambda run: float((run / "loss_history.csv").read_text().splitlines()[1].split(",")[1])  # noqa: E731
    # Same data, t and noise: only the reduced precision of the forward pass differs.
    assert first_loss(tmp_path / "bf16") != first_loss(tmp_path / "fp32")
    assert first_loss(tmp_path / "bf16") == pytest.approx(first_loss(tmp_path / "fp32"), rel=0.05)


def test_a_new_run_chooses_precision_and_layout_for_the_hardware_and_records_them(train_data, tmp_path):
    lines: list[str] = []
    train(train_data, tmp_path / "auto", {**TINY, "steps": 1, "checkpoint_every": 0}, log=lines.append)
    native = native_bfloat16(torch.device("cpu"))
    config = load_run(tmp_path / "auto").config["train"]
    assert config["bf16"] is native and config["channels_last"] is not native  # as measured on CPUs
    said = next(line for line in lines if line.startswith("training"))
    assert ("bfloat16 autocast, contiguous layout" if native else "float32, channels-last layout") in said
    assert "chosen for this cpu" in said
    # Asked for explicitly, the choice is the user's; a resume keeps the run's own.
    train(train_data, tmp_path / "cl", {**TINY, "steps": 1, "channels_last": True, "bf16": False}, log=lines.append)
    assert load_run(tmp_path / "cl").config["train"]["channels_last"] is True
    lines.clear()
    train(train_data, tmp_path / "cl", {**TINY, "steps": 2}, log=lines.append)
    said = next(line for line in lines if line.startswith("resuming"))
    assert "float32, channels-last layout (the run's own)" in said


def test_resume_refuses_another_architecture_schedule_or_dataset(train_runs, train_data, tmp_path):
    run = train_runs["split"]
    before = _snapshot(run)
    with pytest.raises(EntropicError, match=r"base_channels=8; this command asks for 16"):
        train(train_data, run, {"steps": 20, "base_channels": 16}, quiet=True)
    with pytest.raises(EntropicError, match=r"schedule=cosine; this command asks for linear"):
        train(train_data, run, {"steps": 20, "schedule": "linear"}, quiet=True)
    with pytest.raises(EntropicError, match=r"channel_mults=1,2; this command asks for 1,2,2"):
        train(train_data, run, {"steps": 20, "channel_mults": (1, 2, 2)}, quiet=True)
    with pytest.raises(EntropicError, match=r"lr=0.0002; this command asks for 0.001"):
        train(train_data, run, {"steps": 20, "lr": 1e-3}, quiet=True)
    other = tmp_path / "other"
    _make_images(other, count=8, seed=1)
    init_manifest(other, "Someone Else", "CC-BY-4.0")
    with pytest.raises(EntropicError, match=r"manifest sha256"):
        train(other, run, {"steps": 20}, quiet=True)
    assert _snapshot(run) == before


def test_load_run_refusals_name_the_path(train_runs, tmp_path):
    with pytest.raises(EntropicError, match="no such run"):
        load_run(tmp_path / "missing")
    half = tmp_path / "half"
    half.mkdir()
    with pytest.raises(EntropicError, match=r"half.*no config.json"):
        load_run(half)
    shutil.copy(train_runs["straight"] / "config.json", half / "config.json")
    with pytest.raises(EntropicError, match=r"half.*no model.safetensors"):
        load_run(half)
    shutil.copy(train_runs["straight"] / "model.safetensors", half / "model.safetensors")
    assert load_run(half).step == 12
    config = json.loads((half / "config.json").read_text())
    (half / "config.json").write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(EntropicError, match=r"config.json.*version 99"):
        load_run(half)
    (half / "config.json").write_text(json.dumps(config))
    data = (half / "model.safetensors").read_bytes()
    (half / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(EntropicError, match=r"model.safetensors: corrupt or truncated"):
        load_run(half)


# ----------------------------------------------------------------------------- pieces


def test_data_order_is_a_seeded_permutation_per_epoch_and_resumable():
    order = DataOrder(10, seed=3)
    stream = order.indices(0, 35)
    for e in range(3):
        assert sorted(stream[e * 10 : (e + 1) * 10]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])
    # Reading from the middle (a resumed run) gives the same positions; batches may span epochs.
    assert np.array_equal(DataOrder(10, seed=3).indices(17, 8), stream[17:25])
    assert not np.array_equal(DataOrder(10, seed=4).indices(0, 10), stream[:10])
    assert step_seed(0, 5) == step_seed(0, 5) != step_seed(0, 6) != step_seed(0, 5, rank=1)


def test_settings_validated_at_the_edge_and_cli_defaults_in_step():
    with pytest.raises(EntropicError, match="resolution 20 is not divisible by 8"):
        resolve_settings({"resolution": 20})
    with pytest.raises(EntropicError, match="--batch-size"):
        resolve_settings({"batch_size": 0})
    with pytest.raises(EntropicError, match="unknown training option"):
        resolve_settings({"learning_rate": 1.0})
    from render.cli.train import _DEFAULTS

    unet, train_cfg, sched = UNetConfig(), TrainConfig(), ScheduleConfig()
    for key, shown in _DEFAULTS.items():
        if key == "schedule":
            actual = sched.kind
        elif key == "timesteps":
            actual = sched.timesteps
        elif key == "prediction":
            actual = resolve_settings({}).prediction
        else:
            actual = getattr(unet, key) if hasattr(unet, key) else getattr(train_cfg, key)
        if isinstance(actual, tuple):
            actual = ",".join(map(str, actual))
        assert str(actual) == str(shown), key


def test_contact_sheet_places_tiles_exactly_and_labels_them():
    tiles = np.stack([np.full((3, 4), 10 * (i + 1), np.uint8) for i in range(5)])
    sheet = np.asarray(contact_sheet(tiles, cols=2, pad=1, scale=2))
    assert sheet.shape == (1 + 3 * (6 + 1), 1 + 2 * (8 + 1))
    assert (sheet[1:7, 1:9] == 10).all() and (sheet[1:7, 10:18] == 20).all() and (sheet[15:21, 1:9] == 50).all()
    assert sheet[0, 0] == sheet[15, 12]  # background, including the empty last cell
    labelled = contact_sheet(tiles, cols=5, labels=[f"#{i}" for i in range(5)])
    assert labelled.size[1] > contact_sheet(tiles, cols=5).size[1]
    assert np.array_equal(to_uint8(np.array([-1.0, 0.0, 1.0, 7.0])), [0, 128, 255, 255])
    with pytest.raises(EntropicError):
        contact_sheet(tiles.astype(np.float32))


# ----------------------------------------------------------------------------- the command line


def _entropic(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "render.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=ROOT,
    )  # fmt: skip


def _cli_in_process(capsys, *args: str) -> tuple[int, str]:
    """Run ``render.cli.main`` here (same code path as the console script); exit code and stderr."""
    from render.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code, capsys.readouterr().err


def test_bad_inputs_are_one_line_errors_that_change_nothing(train_runs, train_data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(3):
        (texts / f"note{i}.txt").write_text("not an image")
    (texts / "fake.png").write_bytes(b"this is not a png")
    tampered = tmp_path / "tampered"
    shutil.copytree(train_data, tampered)
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(tampered / "img03.png")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(train_runs["straight"], corrupt)
    weights = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(weights[:100])
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("keep me")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.md").write_text("my notes")
    run = train_runs["split"]
    data = str(train_data)
    fresh = lambda name: str(tmp_path / name)  # noqa: E731

    # name: (arguments, what the one line must name, what must stay unchanged on disk)
    cases = {
        "missing folder": ([str(tmp_path / "nope"), "--out", fresh("o1"), *TINY_CLI], "nope", tmp_path / "o1"),
        "corrupt weights": ([data, "--out", str(corrupt), "--steps", "30"], "model.safetensors", corrupt),
        "empty folder": ([str(empty), "--out", fresh("o2"), *TINY_CLI], "empty", tmp_path / "o2"),
        "non-images": ([str(texts), "--out", fresh("o3"), *TINY_CLI], "texts", tmp_path / "o3"),
        "wrong hash": ([str(tampered), "--out", fresh("o4"), *TINY_CLI], "img03.png", tmp_path / "o4"),
        "bad resolution": ([data, "--out", fresh("o5"), "--resolution", "20"], "resolution 20", tmp_path / "o5"),
        "other architecture": ([data, "--out", str(run), "--steps", "30", "--base-channels", "16"], "base_channels=8", run),
        "out is a file": ([data, "--out", str(a_file), *TINY_CLI], "a_file.txt", a_file),
        "out is foreign": ([data, "--out", str(foreign), *TINY_CLI], "foreign", foreign),
        "bad list": ([data, "--out", fresh("o6"), "--channel-mults", "1,x"], "--channel-mults", tmp_path / "o6"),
        "out inside data": ([data, "--out", str(train_data / "run")], "inside the dataset folder", train_data),
    }
    before = {name: _snapshot(out) for name, (_, _, out) in cases.items()}
    # Two cases end to end as real processes (the console script's path, torch import and
    # all), in parallel; the rest through the same main() in this process, which is faster.
    in_subprocess = ("missing folder", "corrupt weights")
    procs = {name: _entropic("train", *cases[name][0], "--quiet") for name in in_subprocess}
    outcomes = {}
    for name, (args, _, _) in cases.items():
        if name not in in_subprocess:
            outcomes[name] = _cli_in_process(capsys, "train", *args, "--quiet")
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        outcomes[name] = (proc.returncode, stderr)
    for name, (code, stderr) in outcomes.items():
        lines = stderr.strip().splitlines()
        assert code != 0, name
        assert "Traceback" not in stderr, (name, stderr)
        assert len(lines) == 1 and lines[0].startswith("entropic: error:"), (name, stderr)
        assert cases[name][1] in lines[0], (name, lines[0])
        assert _snapshot(cases[name][2]) == before[name], name
    # Asking for steps the run already has is not an error.
    code, stderr = _cli_in_process(capsys, "train", data, "--out", str(run), "--steps", "12")
    assert code == 0 and "already at step 12" in stderr


def test_training_loop_lowers_the_loss(train_data, tmp_path):
    run = tmp_path / "learn"
    result = train(train_data, run, {**TINY, "steps": 60, "lr": 2e-3, "dropout": 0.0, "log_every": 10, "checkpoint_every": 0}, quiet=True)
    losses = [float(line.split(",")[1]) for line in (run / "loss_history.csv").read_text().splitlines()[1:]]
    assert len(losses) == 6 and result.final_loss == pytest.approx(losses[-1], rel=1e-5)
    assert losses[-1] < 0.5 * losses[0], losses


def test_sigkill_or_ctrl_c_mid_training_then_resume_matches_a_straight_run(train_data, tmp_path):
    killed, interrupted = tmp_path / "killed", tmp_path / "interrupted"
    args = [str(train_data), *TINY_CLI, "--steps", "100000", "--quiet"]
    procs = {run: _entropic("train", *args, "--out", str(run)) for run in (killed, interrupted)}
    signals = {killed: signal.SIGKILL, interrupted: signal.SIGINT}
    deadline = time.monotonic() + 120
    try:
        for run, proc in procs.items():
            while not (run / "training_state" / "checkpoint.json").exists():
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "no checkpoint within 120 s"
                time.sleep(0.02)
        time.sleep(0.15)  # land somewhere among later steps and checkpoint writes
    finally:
        for run, proc in procs.items():
            proc.send_signal(signals[run])
    _, stderr = procs[killed].communicate(timeout=60)
    assert procs[killed].returncode == -signal.SIGKILL
    _, stderr = procs[interrupted].communicate(timeout=60)
    assert procs[interrupted].returncode == 130 and "Traceback" not in stderr, stderr
    saved = json.loads((interrupted / "training_state" / "checkpoint.json").read_text())["step"]
    assert f"interrupted at step {saved:,}" in stderr  # Ctrl-C saved the step it stopped at

    at = json.loads((killed / "training_state" / "checkpoint.json").read_text())["step"]
    target = at + 3
    resumed = train(train_data, killed, {"steps": target}, quiet=True)
    assert (resumed.start_step, resumed.step) == (at, target)
    straight = tmp_path / "straight"
    cli_settings = {**TINY, "dropout": 0.0, "warmup": 500, "log_every": 10, "checkpoint_every": 2}
    train(train_data, straight, {**cli_settings, "steps": target}, quiet=True)
    assert (killed / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()
    assert load_run(killed).step == target
    assert train(train_data, interrupted, {"steps": saved + 1}, quiet=True).step == saved + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_write_one_normal_run(train_data, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", "-m", "render.cli", "train", str(train_data), "--out", str(run),
        *TINY_CLI, "--steps", "4", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = load_run(run)
    assert loaded.step == 4 and loaded.unet_config.base_channels == 8
    card = json.loads((run / "model_card.json").read_text())
    assert card["hardware"]["world_size"] == 2 and card["training"]["images_seen"] == 32
    assert len((run / "loss_history.csv").read_text().splitlines()) > 1
    assert sorted(p.name for p in (run / "training_state").iterdir()) == ["checkpoint.json", "step_0000004"]
