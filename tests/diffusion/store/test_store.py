"""The trajectory store (numpy only): format, reader, writer protocol, refusals, merge, info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusion.common.errors import EntropicError
from diffusion.store.format import COMPLETE_FILE, HEADER_FILE, StoreSpec, make_header, sample_seed, uint8_ranges
from diffusion.store.writer import StoreWriter, write_store
from diffusion.store.describe import describe_store
from diffusion.store.merge import merge_stores
from diffusion.store.reader import open_store

N, S, H, W = 5, 7, 8, 6


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, S, H, W)).astype(np.float32)
    x[:, -1] = np.clip(x[:, -1], -1, 1)  # x_0 lies in the data range
    t = np.concatenate([np.arange(S - 2, -1, -1), [-1]])
    a = np.concatenate([np.linspace(0.01, 0.99, S - 1), [1.0]])
    return x, t, a


@pytest.fixture()
def store_f16(tmp_path: Path) -> Path:
    x, t, a = _data()
    return write_store(tmp_path / "s", x, t, a, meta={"kind": "fixture"}, x0_predictions=np.clip(x, -1, 1) * 0.5)


def test_round_trip_float16_frames_order_and_metadata(store_f16: Path):
    x, t, a = _data()
    with open_store(store_f16) as st:
        assert (st.num_samples, st.num_steps, st.height, st.width) == (N, S, H, W)
        np.testing.assert_array_equal(st.timesteps, t)
        np.testing.assert_allclose(st.alphas_cumprod, a)
        np.testing.assert_allclose(st.sigmas, np.sqrt(1 - a))
        np.testing.assert_allclose(st.signal_level, np.sqrt(a))
        samples, steps = np.array([4, 0, 2, 2]), np.array([0, 6, 3, 3])
        f = st.frames(samples, steps)
        assert f.dtype == np.float32 and f.shape == (4, H, W)
        np.testing.assert_array_equal(f, x[samples, steps].astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(st.frame(1, 2), x[1, 2].astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(st.trajectory(3), x[3].astype(np.float16).astype(np.float32))
        assert st.frames([], []).shape == (0, H, W)
        # A scalar broadcasts against a sequence.
        np.testing.assert_array_equal(st.frames(2, [0, 1, 2]), st.frames([2, 2, 2], [0, 1, 2]))
        np.testing.assert_allclose(st.frames([1], [5], kind="x0")[0], np.clip(x[1, 5], -1, 1) * 0.5, atol=1e-3)
        assert st.header["meta"] == {"kind": "fixture"}
        assert st.memmap().shape == (N, S, H, W)
        np.testing.assert_array_equal(st.memmap()[4, 0].astype(np.float32), f[0])


def test_frames_uint8_tone_maps_with_clip_range(store_f16: Path):
    with open_store(store_f16) as st:
        f = st.frames([0, 1], [6, 0])
        u = st.frames_uint8([0, 1], [6, 0], lo=-1.0, hi=1.0)
        assert u.dtype == np.uint8
        expected = np.floor(np.clip((f + 1) / 2 * 255 + 0.5, 0, 255)).astype(np.uint8)
        np.testing.assert_array_equal(u, expected)
        wide = st.frames_uint8([1], [0], lo=-4, hi=4)
        assert wide.min() > 0 and wide.max() < 255  # noise fits in +-4
        with pytest.raises(EntropicError, match="tone range"):
            st.frames_uint8([0], [0], lo=1, hi=1)


def test_uint8_store_records_its_mapping_and_quantises_within_half_a_level(tmp_path: Path):
    x, t, a = _data()
    path = write_store(tmp_path / "u8", x, t, a, dtype="uint8")
    assert (path / "x.u8").stat().st_size == N * S * H * W
    with open_store(path) as st:
        lo, hi = uint8_ranges(a)
        entry = st.header["arrays"]["x"]
        np.testing.assert_allclose(entry["lo"], lo)
        np.testing.assert_allclose(entry["hi"], hi)
        for step in range(S):
            f = st.frames(np.arange(N), np.full(N, step))
            inside = (x[:, step] >= lo[step]) & (x[:, step] <= hi[step])
            half_level = (hi[step] - lo[step]) / 255 / 2
            assert np.abs(f - x[:, step])[inside].max() <= half_level * 1.001
        assert hi[-1] == pytest.approx(1.0) and hi[0] > 3.0  # x_0 gets the full 256 levels of [-1, 1]


def test_bad_requests_are_refused(store_f16: Path, tmp_path: Path):
    x, t, a = _data()
    with open_store(store_f16) as st:
        with pytest.raises(EntropicError, match="sample 5 out of range"):
            st.frames([5], [0])
        with pytest.raises(EntropicError, match="step 7 out of range"):
            st.frames([0], [7])
        with pytest.raises(EntropicError, match="same length"):
            st.frames([0, 1], [0, 1, 2])
    plain = write_store(tmp_path / "plain", x, t, a)
    with open_store(plain) as st, pytest.raises(EntropicError, match="record-x0"):
        st.frames([0], [0], kind="x0")
    with pytest.raises(EntropicError, match="already exists"):
        write_store(plain, x, t, a)
    write_store(plain, x * 0, t, a, overwrite=True)
    with open_store(plain) as st:
        assert not st.frames([0], [0]).any()


# ---------------------------------------------------------------------------- refusals


def _refused(path: Path, needle: str, **kw) -> str:
    with pytest.raises(EntropicError) as info:
        open_store(path, **kw)
    msg = str(info.value)
    assert needle in msg, msg
    assert str(path) in msg or str(path / HEADER_FILE) in msg or path.name in msg
    assert "\n" not in msg
    return msg


def _edit_header(path: Path, **changes) -> None:
    h = json.loads((path / HEADER_FILE).read_text())
    h.update(changes)
    (path / HEADER_FILE).write_text(json.dumps(h))


def test_reader_refuses_missing_and_foreign(tmp_path: Path):
    _refused(tmp_path / "nothing", "no such trajectory store")
    (tmp_path / "empty").mkdir()
    _refused(tmp_path / "empty", "no header.json")
    (tmp_path / "file").write_text("x")
    _refused(tmp_path / "file", "not a trajectory store")


def test_reader_refuses_bad_header(store_f16: Path):
    (store_f16 / HEADER_FILE).write_text("{not json")
    _refused(store_f16, "not valid JSON")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"format": "something-else"}, "format"),
        ({"version": 2}, "version 2 is not supported"),
        ({"num_samples": -1}, "num_samples"),
        ({"dtype": "float64"}, "dtype"),
        ({"num_steps": 3}, "steps.timesteps"),
    ],
)
def test_reader_refuses_unknown_format_version_and_malformed_header(store_f16: Path, changes, needle):
    _edit_header(store_f16, **changes)
    _refused(store_f16, needle)


def test_reader_refuses_truncated_and_oversized_arrays(store_f16: Path):
    size = (store_f16 / "x.f16").stat().st_size
    os.truncate(store_f16 / "x.f16", size - 1)
    _refused(store_f16, "truncated")
    os.truncate(store_f16 / "x.f16", size + H * W * 2 * S)
    _refused(store_f16, "append was interrupted")
    os.truncate(store_f16 / "x.f16", size)
    (store_f16 / "x0.f16").unlink()
    _refused(store_f16, "missing")


def test_reader_refuses_incomplete_unless_allowed(store_f16: Path):
    (store_f16 / COMPLETE_FILE).write_text(
        json.dumps({"format": "entropic-trajectories-complete", "version": 1, "ranges": [[0, 2], [3, 5]]})
    )
    msg = _refused(store_f16, "incomplete")
    assert "4 of 5" in msg and "missing: 2" in msg
    with open_store(store_f16, allow_incomplete=True) as st:
        assert st.complete.tolist() == [True, True, False, True, True]
        assert st.complete_indices.tolist() == [0, 1, 3, 4]
        st.frames([0, 4], [1, 1])
        with pytest.raises(EntropicError, match="sample 2 is not complete"):
            st.frames([1, 2], [0, 0])
    (store_f16 / COMPLETE_FILE).write_text(json.dumps({"format": "entropic-trajectories-complete", "version": 1, "ranges": [[0, 9]]}))
    _refused(store_f16, "bad range")
    (store_f16 / COMPLETE_FILE).unlink()  # no completeness record: nothing is complete
    _refused(store_f16, "0 of 5")


# ---------------------------------------------------------------------------- writer protocol


def _spec(**kw) -> StoreSpec:
    _, t, a = _data()
    base = dict(height=H, width=W, timesteps=t, alphas_cumprod=a, seed=3, sampler={"name": "ddpm", "steps": S - 1, "eta": 0.0},
                model={"weights_sha256": "abc"})
    base.update(kw)
    return StoreSpec(**base)


def test_writer_commits_only_after_writing_and_appends_in_place(tmp_path: Path):
    path = tmp_path / "w"
    x, _, _ = _data()
    with StoreWriter.open(path, _spec(), 3) as w:
        w.write_trajectories("x", [0, 1], x[:2].astype("<f2"))
        w.commit([0, 1])
        w.write_trajectories("x", [2], x[2:3].astype("<f2"))  # written, never committed (crash)
    with open_store(path, allow_incomplete=True) as st:
        assert st.complete.tolist() == [True, True, False]
        assert st.seeds.tolist() == [sample_seed(3, i) for i in range(3)]
    inode = (path / "x.f16").stat().st_ino
    with StoreWriter.open(path, _spec(), 5) as w:  # append: grown in place, old samples kept
        assert w.complete.tolist() == [True, True, False, False, False]
        w.write_trajectories("x", [2, 3, 4], x[2:].astype("<f2"))
        w.commit([2, 3, 4])
    assert (path / "x.f16").stat().st_ino == inode
    with open_store(path) as st:
        np.testing.assert_array_equal(st.memmap(), x.astype("<f2"))
        assert st.num_samples == 5 and len(st.seeds) == 5
    with StoreWriter.open(path, _spec(), 2) as w:  # asking for fewer never shrinks
        assert w.header["num_samples"] == 5


def test_writer_repairs_an_interrupted_append(tmp_path: Path):
    path = tmp_path / "w"
    x, _, _ = _data()
    with StoreWriter.open(path, _spec(), 2) as w:
        w.write_trajectories("x", [0, 1], x[:2].astype("<f2"))
        w.commit([0, 1])
    os.truncate(path / "x.f16", 4 * S * H * W * 2)  # grown, header not yet rewritten: the crash window
    _refused(path, "append was interrupted")
    StoreWriter.open(path, _spec(), 2).close()
    with open_store(path) as st:
        assert st.num_samples == 2
        np.testing.assert_array_equal(st.memmap(), x[:2].astype("<f2"))


@pytest.mark.parametrize(
    "change, key",
    [
        ({"seed": 4}, "seeds.base"),
        ({"dtype": "uint8"}, "dtype"),
        ({"model": {"weights_sha256": "other"}}, "model.weights_sha256"),
        ({"sampler": {"name": "ddim", "steps": S - 1, "eta": 0.0}}, "sampler"),
        ({"record_x0": True}, "record_x0"),
        ({"shard": (0, 2)}, "shard"),
    ],
)
def test_writer_refuses_a_different_recording_naming_the_key(tmp_path: Path, change, key):
    path = tmp_path / "w"
    StoreWriter.open(path, _spec(), 2).close()
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(EntropicError, match=rf"{key}(\.\w+)* is .* in the store but"):
        StoreWriter.open(path, _spec(**change), 4)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_writer_refuses_a_foreign_folder_but_takes_an_empty_one(tmp_path: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(EntropicError, match="not a trajectory store"):
        StoreWriter.open(tmp_path / "busy", _spec(), 2)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    StoreWriter.open(tmp_path / "empty", _spec(), 2).close()
    assert (tmp_path / "empty" / HEADER_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def _two_shards(tmp_path: Path, x: np.ndarray, energy_of_first: dict | None = None) -> list[Path]:
    """Shard stores 0 and 1 of 2 holding ``x``'s samples; the first records ``energy_of_first``."""
    parts = []
    for k in range(2):
        p = tmp_path / f"part{k}"
        with StoreWriter.open(p, _spec(shard=(k, 2)), N) as w:
            mine = list(range(k, N, 2))
            w.write_trajectories("x", mine, x[mine].astype("<f2"))
            w.commit(mine)
            if k == 0 and energy_of_first is not None:
                w.add_energy(energy_of_first)
        parts.append(p)
    return parts


def test_merge_requires_disjoint_complete_shards(tmp_path: Path):
    x, _, _ = _data()
    parts = _two_shards(tmp_path, x)
    _refused(parts[0], "merge the shards")
    with pytest.raises(EntropicError, match="missing"):
        merge_stores(tmp_path / "m1", parts[:1])
    with pytest.raises(EntropicError, match="also in"):
        merge_stores(tmp_path / "m2", [parts[0], parts[0]])
    merged = merge_stores(tmp_path / "m", parts)
    with open_store(merged) as st:
        np.testing.assert_array_equal(st.memmap(), x.astype("<f2"))
        assert st.header["shard"] is None
    expected = make_header(_spec(), N)
    assert json.loads((merged / HEADER_FILE).read_text()) == json.loads(json.dumps(expected))
    with pytest.raises(EntropicError, match="already exists"):
        merge_stores(merged, parts)
    other = tmp_path / "other"
    StoreWriter.open(other, _spec(seed=9, shard=(1, 2)), N).close()
    with pytest.raises(EntropicError, match="seeds.base"):
        merge_stores(tmp_path / "m3", [parts[0], other])


def test_sample_seeds_are_a_function_of_base_and_index_only():
    seeds = [sample_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(7, 42) == seeds[42] and sample_seed(8, 42) != seeds[42]
    with pytest.raises(EntropicError):
        sample_seed(-1, 0)


def test_describe_store_reports_facts_and_completeness(store_f16: Path):
    text = describe_store(store_f16)
    assert "samples: 5 (5 complete)" in text
    assert "7 per sample" in text and "8x6" in text and "float16" in text and "predicted x_0" in text
    assert "0 non-finite" in text
    (store_f16 / COMPLETE_FILE).write_text(json.dumps({"format": "entropic-trajectories-complete", "version": 1, "ranges": [[0, 3]]}))
    assert "3 complete" in describe_store(store_f16)


def test_verify_finds_nonfinite_values(tmp_path: Path):
    x, t, a = _data()
    x[2, 3, 1, 1] = np.nan
    x[4, 0, 0, 0] = np.inf
    with open_store(write_store(tmp_path / "bad", x, t, a)) as st:
        assert st.verify() == {"nonfinite_values": 2, "samples_with_nonfinite": 2, "samples_scanned": N}


def test_reader_imports_no_torch():
    probe = (
        "import sys, diffusion.store, diffusion.store.writer, diffusion.store.merge, diffusion.store.describe; "
        "diffusion.store.open_store; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _gather_in_child(path: str, samples: list[int], steps: list[int], queue) -> None:
    queue.put(_SHARED_STORE.frames(samples, steps).tolist())


_SHARED_STORE = None


def test_large_gathers_read_in_parallel_match_the_array_and_survive_fork(tmp_path: Path):
    global _SHARED_STORE
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 9, 4, 4)).astype(np.float32)
    path = write_store(tmp_path / "big", x, np.arange(8, -1, -1) - 1, np.linspace(0.1, 1, 9))
    samples, steps = rng.integers(0, 40, 300), rng.integers(0, 9, 300)
    expected = x[samples, steps].astype(np.float16).astype(np.float32)
    with open_store(path, read_threads=1) as one:
        np.testing.assert_array_equal(one.frames(samples, steps), expected)
    _SHARED_STORE = open_store(path)  # the parallel pool exists in this process before the fork
    try:
        np.testing.assert_array_equal(_SHARED_STORE.frames(samples, steps), expected)
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_gather_in_child, args=(str(path), samples.tolist(), steps.tolist(), queue))
        proc.start()
        got = np.asarray(queue.get(timeout=30), dtype=np.float32)
        proc.join(timeout=30)
        np.testing.assert_array_equal(got, expected)
    finally:
        _SHARED_STORE.close()
        _SHARED_STORE = None


def test_two_writers_never_share_a_store(tmp_path: Path):
    path = tmp_path / "w"
    first = StoreWriter.open(path, _spec(), 2)
    try:
        with pytest.raises(EntropicError, match="another process is recording"):
            StoreWriter.open(path, _spec(), 4)
        assert json.loads((path / HEADER_FILE).read_text())["num_samples"] == 2  # the refused append did nothing
    finally:
        first.close()
    StoreWriter.open(path, _spec(), 4).close()  # released on close


# ---------------------------------------------------------------------------- energy

SESSION = {"kind": "estimate", "joules": 12.5, "seconds": 2.0, "source": "assumed", "samples": 3}


def test_header_energy_is_checked_and_a_store_without_it_reads(store_f16: Path):
    assert "energy" not in json.loads((store_f16 / HEADER_FILE).read_text())  # write_store records none
    assert "sampling energy: unknown" in describe_store(store_f16)
    for bad, needle in [
        ("lots", "energy: must be an object"),
        ({"kind": "guessed", "joules": 1, "seconds": 1, "sessions": []}, "energy.kind"),
        ({"kind": "estimate", "joules": -1, "seconds": 1, "sessions": []}, "energy.joules"),
        ({"kind": "estimate", "joules": 1, "seconds": 1, "sessions": [{"kind": "estimate"}]}, "energy.sessions[0]"),
        ({"kind": "estimate", "joules": 1, "seconds": 1, "sessions": [], "complete": "no"}, "energy.complete"),
    ]:
        _edit_header(store_f16, energy=bad)
        _refused(store_f16, needle)


def test_energy_survives_an_append_and_a_merge_sums_the_shards(tmp_path: Path):
    x, _, _ = _data()
    path = tmp_path / "grow"
    with StoreWriter.open(path, _spec(), 2) as w:
        w.write_trajectories("x", [0, 1], x[:2].astype("<f2"))
        w.commit([0, 1])
        w.add_energy(SESSION)
    with StoreWriter.open(path, _spec(), N) as w:  # the append rewrites the header: the energy stays
        assert w.header["energy"]["sessions"] == [SESSION]
    assert json.loads((path / HEADER_FILE).read_text())["energy"]["joules"] == 12.5
    parts = _two_shards(tmp_path, x, energy_of_first=SESSION)
    # One shard never recorded its energy: the merged sum is a lower bound, and says so.
    energy = json.loads((merge_stores(tmp_path / "m", parts) / HEADER_FILE).read_text())["energy"]
    assert energy == {"kind": "estimate", "joules": 12.5, "seconds": 2.0, "sessions": [SESSION], "complete": False}
    with StoreWriter.open(parts[1], _spec(shard=(1, 2)), N) as w:
        w.add_energy({**SESSION, "kind": "measured"})
    energy = json.loads((merge_stores(tmp_path / "m2", parts) / HEADER_FILE).read_text())["energy"]
    assert energy["joules"] == 25.0 and energy["kind"] == "partly measured, partly estimated" and "complete" not in energy
    assert "sampling energy: 0.025 kJ over 4.0 s, partly measured, partly estimated (2 sessions: 1 estimated, " \
           "1 measured)" in describe_store(tmp_path / "m2")
