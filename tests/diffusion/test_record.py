"""Recording trajectories: determinism, batch independence, resume, append, shards, bad input, CLI."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import diffusion.record as record_module
from diffusion.common.errors import EntropicError
from diffusion.model.execution import native_bfloat16
from diffusion.record import RecordSettings, parse_shard, record
from diffusion.model.schedules import NoiseSchedule, ScheduleConfig
from diffusion.store.format import COMPLETE_FILE, HEADER_FILE
from diffusion.store.writer import StoreWriter
from diffusion.store.merge import merge_stores
from diffusion.store.reader import open_store
from diffusion.model.unet import UNet, UNetConfig

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
T = 12  # diffusion steps of the tiny schedule: DDPM records T + 1 frames


def tiny_model() -> UNet:
    """A 16 px U-Net with seeded random weights (the output layer is not left at zero)."""
    torch.manual_seed(0)
    cfg = UNetConfig(resolution=16, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                     attention_resolutions=(8,), head_channels=8, norm_groups=4)
    model = UNet(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


SCHEDULE = NoiseSchedule.from_config(ScheduleConfig(kind="cosine", timesteps=T))


@pytest.fixture(scope="module")
def model() -> UNet:
    return tiny_model()


def rec(path: Path, model: UNet, **kw) -> record_module.RecordReport:
    settings = RecordSettings(**{"count": 6, "batch_size": 4, "precision": "float32", **kw})
    return record(path, model, SCHEDULE, "eps", settings, progress=False)


def files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def recording(path: Path) -> dict[str, object]:
    """:func:`files`, the header parsed and without "energy": what sampling cost differs between runs by nature."""
    out: dict[str, object] = dict(files(path))
    header = json.loads(out.pop(HEADER_FILE))
    header.pop("energy", None)
    out[HEADER_FILE] = header
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model) -> Path:
    """6 DDPM samples recorded in one go (batch 4: one full batch and one partial)."""
    path = tmp_path_factory.mktemp("ref") / "store"
    report = rec(path, model)
    assert report.recorded == list(range(6))
    return path


def test_store_shape_header_and_statistics(reference: Path):
    with open_store(reference) as st:
        assert (st.num_samples, st.num_steps, st.height, st.width) == (6, T + 1, 16, 16)
        assert st.timesteps.tolist() == list(range(T - 1, -1, -1)) + [-1]
        np.testing.assert_allclose(st.alphas_cumprod[:-1], SCHEDULE.alphas_cumprod[::-1])
        assert st.alphas_cumprod[-1] == 1.0
        h = st.header
        assert h["sampler"]["name"] == "ddpm" and h["sampler"]["steps"] == T and h["seeds"]["base"] == 7
        assert len(h["model"]["weights_sha256"]) == 64
        x_t = st.frames(np.arange(6), np.zeros(6, int))
        x_0 = st.frames(np.arange(6), np.full(6, T))
    # x_T ~ N(0, I): 1536 values; mean within ~4 standard errors, std within 5 %.
    assert abs(x_t.mean()) < 4 / np.sqrt(x_t.size)
    assert abs(x_t.std() - 1) < 0.05
    from scipy import stats

    assert stats.kstest(x_t.ravel(), "norm").pvalue > 1e-3
    assert x_0.min() >= -1.0 and x_0.max() <= 1.0
    assert not np.allclose(x_0[0], x_0[1])  # different seeds, different samples


def test_rerun_is_bit_identical_and_batch_size_independent(tmp_path: Path, model: UNet, reference: Path):
    rec(tmp_path / "again", model)
    assert recording(tmp_path / "again") == recording(reference)
    rec(tmp_path / "b3", model, batch_size=3)
    rec(tmp_path / "b8", model, batch_size=8)
    for other in ("b3", "b8"):
        assert (tmp_path / other / "x.f16").read_bytes() == (reference / "x.f16").read_bytes()


def test_bfloat16_is_deterministic_batch_independent_and_close(tmp_path: Path, model: UNet, reference: Path):
    rec(tmp_path / "bf4", model, precision="bfloat16")
    rec(tmp_path / "bf3", model, precision="bfloat16", batch_size=3)
    assert (tmp_path / "bf4" / "x.f16").read_bytes() == (tmp_path / "bf3" / "x.f16").read_bytes()
    with open_store(tmp_path / "bf4") as bf, open_store(reference) as ref:
        assert bf.header["sampler"]["precision"] == "bfloat16"
        np.testing.assert_array_equal(bf.frames(range(6), [0] * 6), ref.frames(range(6), [0] * 6))  # same x_T
        assert not np.array_equal(bf.memmap(), ref.memmap())
        assert np.abs(bf.frames(range(6), [3] * 6) - ref.frames(range(6), [3] * 6)).mean() < 0.05


def test_auto_precision_is_resolved_per_machine_and_a_store_keeps_its_own(tmp_path: Path, model: UNet, reference: Path):
    native = native_bfloat16(torch.device("cpu"))
    rec(tmp_path / "auto", model, precision="auto", count=2)
    with open_store(tmp_path / "auto") as st:
        assert st.header["sampler"]["precision"] == ("bfloat16" if native else "float32")  # never "auto"
    # Appending with "auto" to a float32 store continues in float32 (and equals a float32 run), whatever the CPU.
    path = tmp_path / "grow"
    rec(path, model, count=4)
    rec(path, model, count=6, precision="auto")
    with open_store(path) as st:
        assert st.header["sampler"]["precision"] == "float32"
    assert (path / "x.f16").read_bytes() == (reference / "x.f16").read_bytes()
    explicit = record_module.for_store(RecordSettings(count=1, precision="bfloat16"), torch.device("cpu"), path)
    assert explicit.precision == "bfloat16"  # an explicit choice is not overridden (the store then refuses it)


def test_a_store_keeps_the_model_batch_it_was_recorded_with(tmp_path: Path, model: UNet):
    # Stores recorded before MODEL_BATCH changed (8 images per model call) resume and append with 8.
    old = tmp_path / "old"
    rec(old, model, count=3, model_batch=8)
    rec(old, model, count=6)  # model_batch left open: the store's own
    with open_store(old) as st:
        assert st.header["sampler"]["model_batch"] == 8
    rec(tmp_path / "eight", model, count=6, model_batch=8)
    assert (old / "x.f16").read_bytes() == (tmp_path / "eight" / "x.f16").read_bytes()
    rec(tmp_path / "new", model, count=2)
    with open_store(tmp_path / "new") as st:
        assert st.header["sampler"]["model_batch"] == record_module.MODEL_BATCH
    with pytest.raises(EntropicError, match="sampler"):  # asked for explicitly, a different chunk is refused
        rec(old, model, count=7, model_batch=record_module.MODEL_BATCH)


def test_sample_i_does_not_depend_on_count_and_append_matches(tmp_path: Path, model: UNet, reference: Path):
    path = tmp_path / "grow"
    rec(path, model, count=2)
    with open_store(path) as small, open_store(reference) as ref:
        np.testing.assert_array_equal(small.memmap(), ref.memmap()[:2])
    report = rec(path, model, count=6)  # appends 4
    assert report.already_complete == 2 and report.recorded == [2, 3, 4, 5]
    assert recording(path) == recording(reference)
    assert rec(path, model, count=6).recorded == []  # nothing left to do


def test_sharded_recording_merges_into_the_single_process_store(tmp_path: Path, model: UNet, reference: Path):
    parts = []
    for k in range(3):
        part = tmp_path / f"shard{k}"
        report = rec(part, model, shard=(k, 3))
        assert report.recorded == list(range(k, 6, 3))
        parts.append(part)
    merged = merge_stores(tmp_path / "merged", parts)
    assert recording(merged) == recording(reference)
    sessions = json.loads((merged / HEADER_FILE).read_text())["energy"]["sessions"]
    assert [s["samples"] for s in sessions] == [2, 2, 2]  # what every shard cost


def test_crash_mid_batch_loses_only_that_batch_and_resume_is_identical(tmp_path: Path, model: UNet, reference: Path, monkeypatch):
    real_sample = record_module.sample
    calls = {"n": 0}

    def crashing_sample(*args, on_step, **kw):
        def wrapped(step, idx, x, x0):
            calls["n"] += 1
            if calls["n"] == (T + 1) + 5:  # 6th frame of the second batch
                raise RuntimeError("simulated crash")
            on_step(step, idx, x, x0)

        return real_sample(*args, on_step=wrapped, **kw)

    monkeypatch.setattr(record_module, "sample", crashing_sample)
    path = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        rec(path, model, record_x0=True)
    with open_store(path, allow_incomplete=True) as st:
        assert st.complete.tolist() == [True] * 4 + [False] * 2
    with pytest.raises(EntropicError, match="incomplete"):
        open_store(path)
    monkeypatch.setattr(record_module, "sample", real_sample)
    report = rec(path, model, record_x0=True)
    assert report.recorded == [4, 5]
    assert (path / "x.f16").read_bytes() == (reference / "x.f16").read_bytes()
    full = tmp_path / "full"
    rec(full, model, record_x0=True)
    assert recording(path) == recording(full)
    energy = json.loads((path / HEADER_FILE).read_text())["energy"]
    assert [s["samples"] for s in energy["sessions"]] == [4, 2] and "complete" not in energy  # the crashed session counts


class FakeMeter:
    """Stands in for the energy meter: a fixed record per session (what the sums do is under test, not the counters)."""

    records = iter(())

    def __init__(self, *args) -> None:
        self.device_type = "cpu"

    def report(self) -> dict:
        return next(FakeMeter.records)

    def poll_due(self) -> None:
        pass


def test_every_session_adds_its_energy_to_the_header(tmp_path: Path, model: UNet, monkeypatch):
    measured = {"kind": "measured", "joules": 50.0, "seconds": 2.0, "source": "RAPL"}
    estimate = {"kind": "estimate", "joules": 15.0, "seconds": 1.0, "source": "assumed", "assumed_power_w": 45.0}
    FakeMeter.records = iter([measured, estimate, measured])
    monkeypatch.setattr(record_module, "_start_meter", FakeMeter)
    path = tmp_path / "s"
    rec(path, model, count=2)
    rec(path, model, count=5)  # appends 3
    header = json.loads((path / HEADER_FILE).read_text())
    assert header["energy"] == {
        "kind": "partly measured, partly estimated", "joules": 65.0, "seconds": 3.0,
        "sessions": [{**measured, "samples": 2, "device": "cpu"}, {**estimate, "samples": 3, "device": "cpu"}],
    }
    before = files(path)
    assert rec(path, model, count=5).recorded == []  # nothing sampled, nothing added
    assert files(path) == before
    with open_store(path) as st:  # the reader accepts it
        assert st.header["energy"]["joules"] == 65.0
    from diffusion.store.describe import describe_store

    assert "sampling energy: 0.065 kJ over 3.0 s, partly measured, partly estimated (2 sessions: 1 estimated, " \
           "1 measured)" in describe_store(path)
    # A store recorded before energy was: what its samples cost is unknown, so a resumed sum is a lower bound.
    header.pop("energy")
    (path / HEADER_FILE).write_text(json.dumps(header))
    assert "sampling energy: unknown" in describe_store(path)
    rec(path, model, count=6)
    energy = json.loads((path / HEADER_FILE).read_text())["energy"]
    assert energy["complete"] is False and energy["joules"] == 50.0 and energy["sessions"][0]["samples"] == 1
    assert "sampling energy: at least 0.050 kJ" in describe_store(path)


def test_a_session_longer_than_its_counter_s_wrap_is_counted_whole(tmp_path: Path, model: UNet, wrapping_package):
    rec(tmp_path / "s", model, count=3)
    session = json.loads((tmp_path / "s" / HEADER_FILE).read_text())["energy"]["sessions"][0]
    # The counter was read along the way (each read 70 J on): more than one wrap's worth counted.
    assert session["kind"] == "measured" and session["joules"] > 2 * wrapping_package


def test_full_disk_leaves_a_consistent_resumable_store(tmp_path: Path, model: UNet, reference: Path):
    class FullDisk(StoreWriter):
        writes = 0

        def _pwrite(self, fd, data, offset):
            FullDisk.writes += 1
            if FullDisk.writes > 4 * (T + 1) + 7:  # fails during the second batch
                raise OSError(errno.ENOSPC, "No space left on device")
            super()._pwrite(fd, data, offset)

    path = tmp_path / "full"
    settings = RecordSettings(count=6, batch_size=4, precision="float32")
    with pytest.raises(EntropicError, match="disk full.*4 complete samples.*re-run"):
        record(path, model, SCHEDULE, "eps", settings, progress=False, _writer_factory=FullDisk.open)
    with open_store(path, allow_incomplete=True) as st, open_store(reference) as ref:
        assert st.complete.tolist() == [True] * 4 + [False] * 2
        np.testing.assert_array_equal(st.memmap()[:4], ref.memmap()[:4])
    rec(path, model)
    assert recording(path) == recording(reference)


def test_a_store_of_another_recording_is_refused_and_left_alone(tmp_path: Path, model: UNet, reference: Path):
    path = tmp_path / "s"
    rec(path, model, count=2)
    before = files(path)
    for kw, key in [
        ({"seed": 8}, "seeds.base"),
        ({"sampler": "ddim", "steps": 5}, "sampler"),
        ({"dtype": "uint8"}, "dtype"),
        ({"record_x0": True}, "record_x0"),
        ({"precision": "bfloat16"}, "sampler"),
    ]:
        with pytest.raises(EntropicError, match=key):
            rec(path, model, count=4, **kw)
    other = tiny_model()
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    with pytest.raises(EntropicError, match="weights_sha256"):
        rec(path, other, count=4)
    assert files(path) == before


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"count": 0}, "--count must be a positive integer"),
        ({"sampler": "ddim", "steps": -3}, "--steps must be a positive integer"),
        ({"sampler": "ddim", "steps": T + 1}, f"more than the model's {T} diffusion timesteps"),
        ({"sampler": "ddpm", "steps": 5}, "walks all"),
        ({"eta": 0.5}, "ddim only"),
        ({"sampler": "ddim", "eta": 2.0}, "--eta must be in"),
        ({"batch_size": 0}, "--batch-size"),
        ({"dtype": "float64"}, "--dtype"),
        ({"seed": -1}, "--seed"),
        ({"precision": "float16"}, "--precision"),
        ({"model_batch": 0}, "model_batch"),
    ],
)
def test_bad_settings_are_refused_before_touching_disk(tmp_path: Path, model: UNet, kw, needle):
    with pytest.raises(EntropicError, match=needle):
        rec(tmp_path / "never", model, **kw)
    assert not (tmp_path / "never").exists()


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(EntropicError, match="shard"):
            parse_shard(bad)


def test_ddim_with_predicted_x0_and_uint8(tmp_path: Path, model: UNet):
    f16 = tmp_path / "ddim"
    rec(f16, model, sampler="ddim", steps=5, eta=0.0, record_x0=True)
    u8 = tmp_path / "ddim8"
    rec(u8, model, sampler="ddim", steps=5, eta=0.0, dtype="uint8")
    with open_store(f16) as st, open_store(u8) as q:
        assert st.num_steps == 6 and st.timesteps[-1] == -1 and st.timesteps[0] == T - 1
        last = st.num_steps - 1
        np.testing.assert_array_equal(st.frames(range(6), [last] * 6), st.frames(range(6), [last] * 6, kind="x0"))
        x0 = st.frames(range(6), [2] * 6, kind="x0")
        assert x0.min() >= -1 and x0.max() <= 1  # the sampler's clipped estimate
        assert (u8 / "x.u8").stat().st_size * 2 == (f16 / "x.f16").stat().st_size
        hi = np.asarray(q.header["arrays"]["x"]["hi"])
        for step in range(6):
            a, b = st.frames(range(6), [step] * 6), q.frames(range(6), [step] * 6)
            inside = np.abs(a) < hi[step]
            assert np.abs(a - b)[inside].max() <= hi[step] / 255 + 2e-3  # half a level + float16 rounding


CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
from tests.diffusion.test_record import tiny_model, SCHEDULE
from diffusion.record import RecordSettings, record
torch.set_num_threads(1)
record({path!r}, tiny_model(), SCHEDULE, "eps", RecordSettings(count=12, batch_size=2, precision="float32"), progress=False)
"""


def test_killed_process_resumes_to_the_same_store(tmp_path: Path, model: UNet):
    path = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            cp = path / COMPLETE_FILE
            if cp.is_file() and json.loads(cp.read_text())["ranges"]:
                break
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    with open_store(path, allow_incomplete=True) as st:
        done = int(st.complete.sum())
    assert 0 < done < 12, f"{done} samples complete when killed; the test needs a kill mid-recording"
    report = rec(path, model, count=12, batch_size=2)
    assert report.already_complete == done
    rec(tmp_path / "whole", model, count=12, batch_size=6)
    assert recording(path) == recording(tmp_path / "whole")
    energy = json.loads((path / HEADER_FILE).read_text())["energy"]
    assert energy["complete"] is False  # the killed session's energy was never written: a lower bound


# ---------------------------------------------------------------------------- command line


def entropic(*args: str) -> subprocess.CompletedProcess:
    """The real command line in a fresh process (as a user runs it)."""
    return subprocess.run(
        [sys.executable, "-c", "from render.cli import main; main()", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_cli_sample_resume_info_and_refusals(tmp_path: Path, tiny_run: Path, cli):
    out = tmp_path / "traj"
    r = entropic("sample", str(tiny_run), "--out", str(out), "--count", "3", "--sampler", "ddim", "--steps", "4",
                 "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "recorded 3 samples" in r.stdout
    header = json.loads((out / HEADER_FILE).read_text())
    # What it chose for this machine is said, and recorded in the store.
    chosen = "bfloat16 autocast" if header["sampler"]["precision"] == "bfloat16" else "float32"
    assert f"({chosen}, channels-last)" in r.stdout and header["sampler"]["memory_format"] == "channels_last"
    assert header["model"]["run"] == tiny_run.name  # named, not located: the store travels without the folders
    assert header["model"]["dataset"]["manifest_sha256"]
    card = json.loads((tiny_run / "model_card.json").read_text())
    assert header["model"]["training_energy"] == card["energy"]  # a video drawn from the store can add it up
    assert header["energy"]["sessions"][0]["samples"] == 3
    info = cli("info", str(out))
    assert info.returncode == 0, info.stderr
    assert "3 complete" in info.stdout and "ddim, 4 steps" in info.stdout and "manifest sha256" in info.stdout
    assert "sampling energy: " in info.stdout and "(1 session: 1 " in info.stdout
    assert "training energy (the run's card): " in info.stdout
    again = cli("sample", str(tiny_run), "--out", str(out), "--sampler", "ddim", "--steps", "4", "--quiet")
    assert again.returncode == 0 and "nothing to do" in again.stdout  # count defaults to the store's
    before = files(out)
    for args, needle in [
        (["--count", "0"], "--count must be a positive integer"),
        (["--count", "3", "--sampler", "ddim", "--steps", "-2"], "--steps must be a positive integer"),
        (["--count", "3", "--sampler", "ddim", "--steps", "11"], "more than the model's 10"),
        (["--count", "3", "--seed", "8", "--sampler", "ddim", "--steps", "4"], "seeds.base"),
        (["--count", "3"], "sampler.name is \"ddim\" in the store but \"ddpm\""),
    ]:
        bad = cli("sample", str(tiny_run), "--out", str(out), "--quiet", *args)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 1 and len(lines) == 1 and needle in lines[0], bad.stderr
    assert files(out) == before
    from render.cli import default_piece

    if not (default_piece.MODEL_DIR / "model.safetensors").is_file():  # no default model shipped (yet)
        r = cli("sample", "--out", str(tmp_path / "d"), "--count", "2", "--quiet")
        assert r.returncode == 1 and "no default model" in r.stderr and not (tmp_path / "d").exists()
    missing = cli("sample", str(tmp_path / "no-run"), "--out", str(tmp_path / "x"), "--count", "2", "--quiet")
    assert missing.returncode == 1 and "no such run directory" in missing.stderr
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((tiny_run / "config.json").read_text())  # weights never written
    r = cli("sample", str(half), "--out", str(tmp_path / "y"), "--count", "2", "--quiet")
    assert r.returncode == 1 and "model.safetensors" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "y").exists()


def test_cli_shards_and_merge(tmp_path: Path, tiny_run: Path, cli):
    common = ["--count", "4", "--sampler", "ddim", "--steps", "3", "--quiet", "--threads", "1"]
    for k in range(2):
        r = cli("sample", str(tiny_run), "--out", str(tmp_path / f"p{k}"), "--shard", f"{k}/2", *common)
        assert r.returncode == 0, r.stderr
    r = cli("sample", "--merge", str(tmp_path / "p0"), str(tmp_path / "p1"), "--out", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    r = cli("sample", str(tiny_run), "--out", str(tmp_path / "single"), *common)
    assert r.returncode == 0, r.stderr
    assert recording(tmp_path / "m") == recording(tmp_path / "single")


# The real command line with a kill at one write point: ``entropic sample`` SIGKILLs itself right
# after the new store's header is written into its temporary folder (before the rename).
KILL_AT_CREATION = """
import os, signal, sys
from pathlib import Path
import diffusion.store.writer as writer
real = writer.atomic_write_json
def write_then_die(path, obj):
    real(path, obj)
    path = Path(path)
    if path.name == "header.json" and path.parent.name.endswith(".tmp"):
        os.kill(os.getpid(), signal.SIGKILL)
writer.atomic_write_json = write_then_die
from render.cli import main
main(sys.argv[1:])
"""


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_sample_killed_while_creating_the_store_leaves_nothing_behind(tmp_path: Path, tiny_run: Path, cli):
    args = ["sample", str(tiny_run), "--count", "3", "--sampler", "ddim", "--steps", "3", "--quiet", "--threads", "1"]
    out = tmp_path / "killed" / "traj"
    out.parent.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILL_AT_CREATION, *args, "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists() and len(hidden(out.parent)) == 1  # the temporary folder of the dead process
    again = cli(*args, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert hidden(out.parent) == [] and hidden(out) == []
    whole = cli(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    assert recording(out) == recording(tmp_path / "whole")


def test_a_store_whose_header_disagrees_with_its_arrays_is_refused_untouched(tmp_path: Path, model: UNet,
                                                                            reference: Path):
    path = tmp_path / "store"
    path.mkdir()
    for name, data in files(reference).items():
        (path / name).write_bytes(data)
    header = json.loads((path / HEADER_FILE).read_text())
    header["num_samples"] = 4  # the arrays hold 6 recorded samples
    header["seeds"]["values"] = header["seeds"]["values"][:4]
    (path / HEADER_FILE).write_text(json.dumps(header))
    (path / COMPLETE_FILE).write_text(json.dumps({"format": "entropic-trajectories-complete", "version": 1,
                                                   "ranges": [[0, 4]]}))
    before = files(path)
    for count in (4, 6):
        with pytest.raises(EntropicError, match=r"x\.f16: array file holds 6 samples.*disagrees with its arrays"):
            rec(path, model, count=count)
        assert files(path) == before and hidden(tmp_path) == []
    with pytest.raises(EntropicError, match="disagrees with its arrays"):
        open_store(path)
    # A damaged completeness record is refused before an append grows anything.
    header["num_samples"] = 6
    header["seeds"]["values"] = json.loads((reference / HEADER_FILE).read_text())["seeds"]["values"]
    (path / HEADER_FILE).write_text(json.dumps(header))
    (path / COMPLETE_FILE).write_text("{")
    before = files(path)
    with pytest.raises(EntropicError, match=r"complete\.json"):
        rec(path, model, count=8)
    assert files(path) == before
