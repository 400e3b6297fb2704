"""The rolling store's bookkeeping (diffusion.store.rolling) and the plan made from [generate]."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffusion.common.errors import EntropicError
from diffusion.store import rolling as rs
from diffusion.store.rolling_keep import Keep, cycles_ahead, parse_keep
from render.endless.plan import plan_endless
from tests.helpers import endless_scene, write_synthetic_store

RECIPE = {"model": {"run": "run", "weights_sha256": "ab"}, "count": 4, "seed": 7, "sampler": "ddim", "steps": 3}


def make_cycle(root: Path, n: int, complete: bool = True) -> Path:
    path = write_synthetic_store(rs.cycle_path(root, n), 4, steps=3, size=8, seed=n)
    if not complete:  # as if the sampler had been stopped before its first batch was committed
        (path / "complete.json").rename(path / "complete.later")
    return path


def test_keep_is_cycles_or_a_disk_budget():
    assert parse_keep("3") == Keep(cycles=3)
    assert parse_keep("500MB") == Keep(bytes=500 * 10**6)
    assert parse_keep("2GiB") == Keep(bytes=2 * 2**30)
    assert parse_keep("1.5 gb") == Keep(bytes=1_500_000_000)
    assert [cycles_ahead(Keep(cycles=n), 100) for n in (2, 3, 10)] == [1, 2, 2]
    assert [cycles_ahead(Keep(bytes=b), 100) for b in (200, 299, 300, 10_000)] == [1, 1, 2, 2]
    for bad, words in (("1", "at least 2"), ("²", "disk budget"), ("12345678901", "disk budget"), ("0", "at least 2"), ("lots", "disk budget"), ("-3", "disk budget"),
                       ("5 parsecs", "disk budget")):
        with pytest.raises(EntropicError, match=words):
            parse_keep(bad)


def test_cycles_are_numbered_on_and_the_sampler_stays_one_ahead(tmp_path):
    root = rs.open_rolling(tmp_path / "rolling", RECIPE)
    assert rs.to_make(root) == 0 and rs.first_to_play(root) == (None, False)
    make_cycle(root, 0)
    assert rs.to_make(root) is None  # an unplayed complete cycle: ahead
    assert rs.first_to_play(root) == (0, False)
    rs.record_shown(root, 0)
    assert rs.read_playing(root) == 0 and rs.to_make(root) == 1
    make_cycle(root, 1, complete=False)
    assert rs.to_make(root) == 1 and rs.complete_cycles(root) == [0]
    (rs.cycle_path(root, 1) / "complete.later").rename(rs.cycle_path(root, 1) / "complete.json")
    assert rs.to_make(root) is None  # one ahead: done; two ahead: the sampler goes on to 2
    assert rs.to_make(root, ahead=2) == 2
    rs.record_shown(root, 1)
    assert rs.to_make(root) == 2
    rs.record_shown(root, 0)  # a window playing an older cycle again: never a number already shown
    assert rs.to_make(root) == 2
    assert rs.highest_shown(root) == 1 and rs.to_make(root, shown_up_to=1) == 2  # the recorder's way
    # A window starting when every complete cycle was shown plays the newest again.
    (root / rs.PLAYING_FILE).unlink()
    assert rs.first_to_play(root) == (1, True)
    assert rs.next_cycle(root) == 2
    # Cycle seeds: a function of (base, cycle) only, different per cycle.
    assert rs.cycle_seed(7, 3) == rs.cycle_seed(7, 3) != rs.cycle_seed(7, 4) != rs.cycle_seed(8, 3)


def test_pruning_keeps_the_newest_and_never_the_protected(tmp_path):
    root = rs.open_rolling(tmp_path / "rolling", RECIPE)
    for n in range(5):
        make_cycle(root, n)
    assert rs.prune(root, Keep(cycles=3), protect={0}) == [1]
    assert rs.cycle_numbers(root) == [0, 2, 3, 4]
    one = rs.folder_bytes(rs.cycle_path(root, 4))
    assert rs.prune(root, Keep(bytes=2 * one + 1), protect={3}) == [0, 2]
    assert rs.cycle_numbers(root) == [3, 4]
    rs.record_shown(root, 2)
    text = rs.describe(root)
    assert "cycle      2: removed" in text and "cycle      4: complete      not shown" in text


def test_a_rolling_store_of_another_recipe_is_refused_and_kept(tmp_path):
    root = rs.open_rolling(tmp_path / "rolling", RECIPE)
    make_cycle(root, 0)
    with pytest.raises(EntropicError, match='steps = 3, the scene asks for 5'):
        rs.open_rolling(root, {**RECIPE, "steps": 5})
    assert rs.complete_cycles(root) == [0]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(EntropicError, match="not a rolling store"):
        rs.open_rolling(tmp_path / "mine", RECIPE)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def plan(scene: Path, keep: Keep | None = None, implicit: bool = False):
    return plan_endless(scene, scene.read_text(), implicit=implicit, keep=keep, default_run=lambda: Path("nowhere"),
                        cache_dir=lambda: scene.parent / "cache", default_store="default")


def test_the_plan_checks_generate_against_the_model(tmp_path, tiny_run):
    scene = tmp_path / "scene.toml"
    scene.write_text(endless_scene(tiny_run))
    p = plan(scene)
    assert p.settings.count == 6 and p.settings.steps == 3 and p.run == tiny_run
    assert p.root.parent == tmp_path / "cache" / "endless" and p.root.name.startswith("scene-")
    assert p.cycle_bytes == 6 * 4 * 16 * 16 * 2  # 6 samples x (3 steps + x_0) x 16 px squared x float16
    assert plan(scene).root == p.root  # the same scene and recipe: the same rolling store
    scene.write_text(endless_scene(tiny_run).replace("steps = 3", "steps = 4"))
    assert plan(scene).root != p.root  # another recipe: another one
    for text, words in (
        (endless_scene(tiny_run).replace("steps = 3", "steps = 30"), "more than the model's 10"),
        (endless_scene(tmp_path / "nothing"), "generate.model"),
        (endless_scene(tiny_run) + "count = 2\n", "generate.count: 2 samples per cycle, but a grid needs 6"),
        (endless_scene(tiny_run).replace('store = "generated"', 'store = "x"'), "no [[grid]] plays"),
    ):
        scene.write_text(text)
        with pytest.raises(EntropicError, match=words.replace("[", r"\[").replace(".", r"\.")):
            plan(scene)
    scene.write_text(endless_scene(tiny_run))
    with pytest.raises(EntropicError, match="budget must hold two"):
        plan(scene, keep=Keep(bytes=p.cycle_bytes))
    # Without [generate] a scene is not endless unless asked; asked, its "default" grids play the cycles.
    scene.write_text(endless_scene(tiny_run).split("[generate]")[0].replace('"generated"', '"default"'))
    assert plan(scene) is None
    with pytest.raises(EntropicError, match="nowhere is not a run directory"):
        plan(scene, implicit=True)
