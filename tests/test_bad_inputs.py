"""The bad-input corpus: malformed images, manifests, runs and weights, stores, scenes and options.

Every case runs the real ``entropic`` command in a subprocess, in a copy of one small
workspace (a dataset, a run trained for a few steps, a store recorded from it, a scene; made
once per module), after spoiling one thing in it. Each must be refused the way the most
trusted tools refuse: a non-zero exit status, one line on stderr that names the file, key or
value at fault, no traceback, and every file of the workspace exactly as it was.

The cases run a few at a time (they are processes; most of their time is importing), each
in its own copy; each test then checks its own case. A case marked xfail is a defect in a
part of the code that this corpus does not own: its reason names the file to fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

Setup = Callable[[Path], None]

# Options that keep a command cheap if it were (wrongly) to go ahead instead of refusing.
TINY_TRAIN = ("--resolution", "16", "--base-channels", "8", "--channel-mults", "1,2", "--num-res-blocks", "1",
              "--attention-resolutions", "none", "--head-channels", "8", "--timesteps", "10", "--steps", "1",
              "--batch-size", "4", "--sample-every", "0", "--device", "cpu", "--quiet")
TINY_SAMPLE = ("--count", "2", "--sampler", "ddim", "--steps", "2", "--quiet")
RENDER = ("-o", "out.gif", "--quiet")
TIMEOUT_S = 120
LARGE_FILE = 64 << 20  # files above this are compared by size, time and their ends (sparse giants)


def bad_name(raw: bytes) -> str:
    """A file name that is not valid UTF-8, as Python passes it to the command (surrogateescape)."""
    return os.fsdecode(raw)


@dataclass(frozen=True)
class Case:
    """One malformed input: ``setup`` spoils the workspace, ``args`` run in it, ``names`` must be in the message."""

    id: str
    args: tuple[str, ...]
    names: tuple[str, ...]
    setup: Setup | None = None
    xfail: str | None = None


# ---------------------------------------------------------------------------------- spoilers


def write(rel: str, content: str | bytes) -> Setup:
    def setup(ws: Path) -> None:
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    return setup


def write_raw(rel: bytes, content: bytes) -> Setup:
    """A file whose name holds bytes that are not UTF-8."""

    def setup(ws: Path) -> None:
        path = os.path.join(os.fsencode(ws), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)

    return setup


def copy(src: str, dst: str | bytes) -> Setup:
    def setup(ws: Path) -> None:
        target = os.path.join(os.fsencode(ws), dst if isinstance(dst, bytes) else os.fsencode(dst))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(ws / src, target)

    return setup


def rename(src: str, dst: bytes) -> Setup:
    def setup(ws: Path) -> None:
        os.rename(os.fsencode(ws / src), os.path.join(os.fsencode(ws), dst))

    return setup


def delete(rel: str) -> Setup:
    return lambda ws: (ws / rel).unlink()


def truncate(rel: str, size: int) -> Setup:
    def setup(ws: Path) -> None:
        data = (ws / rel).read_bytes()
        (ws / rel).write_bytes(data[:size])

    return setup


def sparse(rel: str, size: int, head: bytes = b"") -> Setup:
    """A file of ``size`` bytes that takes no room on disk (holes), starting with ``head``."""

    def setup(ws: Path) -> None:
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(size)

    return setup


def mkdir(rel: str) -> Setup:
    return lambda ws: (ws / rel).mkdir(parents=True)


def set_json(rel: str, key: str, value: Any) -> Setup:
    """Set the dotted ``key`` (numbers index arrays) of the JSON file ``rel`` to ``value``."""

    def setup(ws: Path) -> None:
        path = ws / rel
        data = json.loads(path.read_text(encoding="utf-8"))
        parts = [int(p) if p.isdigit() else p for p in key.split(".")]
        node = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")

    return setup


def edit_text(rel: str, old: str, new: str) -> Setup:
    def setup(ws: Path) -> None:
        path = ws / rel
        text = path.read_text(encoding="utf-8")
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return setup


def both(*setups: Setup) -> Setup:
    def setup(ws: Path) -> None:
        for step in setups:
            step(ws)

    return setup


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def scene(grid: str = "", canvas: str = "", top: str = "version = 1\n") -> str:
    """The workspace's scene with extra lines in [[grid]] / [canvas] (or another top)."""
    return (
        f"{top}[canvas]\nwidth = 32\nheight = 32\nfps = 5\nduration = 1\n{canvas}"
        f'[[grid]]\nstore = "store"\nrows = 2\ncols = 2\n{grid}'
    )


def generated(generate: str = "") -> str:
    """A scene whose grid plays cycles that [generate] samples from the workspace's run."""
    return scene().replace('"store"', '"generated"') + f'[generate]\nmodel = "run"\nsteps = 2\n{generate}'


NESTED_ARRAY = "a = " + "[" * 10_000 + "]" * 10_000 + "\n"
NESTED_JSON = "[" * 100_000 + "]" * 100_000
LONG_NUMBER = "9" * 5_000
# ---------------------------------------------------------------------------------- the corpus

IMAGES = [
    Case("init-image-name-not-utf8", ("dataset", "init", "mine", "--creator", "Ada", "--license", "CC0-1.0"),
         ("mine", "bad\\xff.png", "UTF-8"), copy("data/img00.png", b"mine/bad\xff.png")),
    Case("check-image-name-not-utf8", ("dataset", "check", "data"), ("bad\\xff.png", "UTF-8"),
         copy("data/img00.png", b"data/bad\xff.png")),
    Case("init-only-text-files", ("dataset", "init", "mine", "--creator", "Ada", "--license", "CC0-1.0"),
         ("mine", "a.png", "cannot identify image file"), write("mine/a.png", "not an image\n")),
    Case("init-truncated-png", ("dataset", "init", "mine", "--creator", "Ada", "--license", "CC0-1.0"),
         ("mine", "cut.png"), both(copy("data/img00.png", "mine/cut.png"), truncate("mine/cut.png", 50))),
    Case("init-decompression-bomb", ("dataset", "init", "mine", "--creator", "Ada", "--license", "CC0-1.0"),
         ("bomb.png", "decompression bomb"), write("mine/bomb.png", png_header_only(100_000, 100_000))),
    Case("init-file-larger-than-any-image", ("dataset", "init", "mine", "--creator", "Ada", "--license", "CC0-1.0"),
         ("huge.png", "larger than any image"), sparse("mine/huge.png", 700 << 20, b"\x89PNG\r\n\x1a\n")),
    Case("init-empty-folder", ("dataset", "init", "mine", "--creator", "Ada", "--license", "CC0-1.0"),
         ("mine", "empty"), mkdir("mine")),
    Case("init-no-image-files", ("dataset", "init", "mine", "--creator", "Ada", "--license", "CC0-1.0"),
         ("mine", "no image files"), write("mine/notes.txt", "hello\n")),
    Case("init-missing-folder", ("dataset", "init", "nowhere", "--creator", "Ada", "--license", "CC0-1.0"),
         ("nowhere", "does not exist")),
    Case("init-folder-is-a-file", ("dataset", "init", "scene.toml", "--creator", "Ada", "--license", "CC0-1.0"),
         ("scene.toml", "not a folder")),
    Case("init-blank-creator", ("dataset", "init", "data", "--creator", "  ", "--license", "CC0-1.0", "--force"),
         ("creator", "--creator")),
    Case("glyphs-resolution-too-large", ("dataset", "default", "glyphs", "--resolution", "100000"),
         ("resolution 100000", "1024")),
    Case("glyphs-jitter-too-large", ("dataset", "default", "glyphs", "--jitter", "100000000"), ("jitter 100000000", "100")),
    Case("init-manifest-exists", ("dataset", "init", "data", "--creator", "Ada", "--license", "CC0-1.0"),
         ("data/provenance.json", "--force")),
    Case("check-image-changed", ("dataset", "check", "data"), ("img00.png", "changed"),
         copy("data/img01.png", "data/img00.png")),
    Case("check-image-missing", ("dataset", "check", "data"), ("img01.png", "missing"), delete("data/img01.png")),
    Case("check-image-unlisted", ("dataset", "check", "data"), ("new.png", "not in the manifest"),
         copy("data/img00.png", "data/new.png")),
    Case("train-dataset-name-not-utf8", ("train", bad_name(b"d\xffta"), "--out", "fresh", *TINY_TRAIN),
         ("d\\xffta", "UTF-8"), rename("data", b"d\xffta")),
]

MANIFESTS = [
    Case("manifest-not-json", ("dataset", "check", "data"), ("data/provenance.json", "line 1"),
         write("data/provenance.json", "{")),
    Case("manifest-not-utf8", ("dataset", "check", "data"), ("data/provenance.json", "UTF-8"),
         write("data/provenance.json", b'{"format": "\xff"}')),
    Case("manifest-nested-too-deep", ("dataset", "check", "data"), ("data/provenance.json", "nested"),
         write("data/provenance.json", NESTED_JSON)),
    Case("manifest-wrong-format", ("dataset", "check", "data"), ("data/provenance.json", "entropic-provenance"),
         set_json("data/provenance.json", "format", "something-else")),
    Case("manifest-newer-version", ("dataset", "check", "data"), ("data/provenance.json", "version 2"),
         set_json("data/provenance.json", "version", 2)),
    Case("manifest-images-not-a-list", ("dataset", "check", "data"), ("data/provenance.json", "'images'"),
         set_json("data/provenance.json", "images", 3)),
    Case("manifest-record-not-an-object", ("dataset", "check", "data"), ("data/provenance.json", "images[0]"),
         set_json("data/provenance.json", "images.0", "img00.png")),
    Case("manifest-path-escapes-folder", ("dataset", "check", "data"), ("images[0]", "../img00.png"),
         set_json("data/provenance.json", "images.0.file", "../img00.png")),
    Case("manifest-bad-hash", ("dataset", "check", "data"), ("images[0]", "sha256"),
         set_json("data/provenance.json", "images.0.sha256", "not-a-hash")),
    Case("manifest-blank-licence", ("dataset", "check", "data"), ("img00.png", "license"),
         set_json("data/provenance.json", "images.0.license", " ")),
    Case("manifest-integer-too-long", ("dataset", "check", "data"), ("data/provenance.json", "5000 digits"),
         edit_text("data/provenance.json", '"version": 1', f'"version": {LONG_NUMBER}')),
    Case("manifest-duplicate-key", ("dataset", "check", "data"), ("data/provenance.json", "'version'"),
         edit_text("data/provenance.json", '"format"', '"version": 1, "format"')),
    Case("manifest-sha-of-other-image", ("dataset", "check", "data"), ("img00.png",),
         edit_text("data/provenance.json", '"img01.png"', '"img00.png"')),
    Case("manifest-label-empty", ("dataset", "check", "data"), ("images[0]", "img00.png", "'label'", "empty"),
         set_json("data/provenance.json", "images.0.label", "")),
    Case("manifest-label-a-number", ("dataset", "check", "data"), ("images[0]", "'label'", "string"),
         set_json("data/provenance.json", "images.0.label", 3)),
    Case("manifest-label-too-long", ("dataset", "check", "data"), ("images[0]", "'label'", "at most 64"),
         set_json("data/provenance.json", "images.0.label", "x" * 65)),
    Case("init-labels-from-folders-loose-image", ("dataset", "init", "data", "--creator", "Ada", "--license", "CC0-1.0",
                                                  "--labels-from-folders", "--force"), ("img00.png", "subfolder")),
    Case("train-on-partly-labelled-images", ("train", "data", "--out", "fresh", *TINY_TRAIN), ("1 of 12", "no label"),
         set_json("data/provenance.json", "images.0.label", "bars")),
]

RUNS = [
    Case("info-config-model-a-number", ("info", "run"), ("run/config.json", "model"),
         set_json("run/config.json", "model", 3)),
    Case("info-config-integer-too-long", ("info", "run"), ("run/config.json", "5000 digits"),
         edit_text("run/config.json", '"images": 12', f'"images": {LONG_NUMBER}')),
    Case("info-card-an-array", ("info", "run"), ("run/model_card.json", "object"), write("run/model_card.json", "[1, 2]")),
    Case("sample-weights-truncated", ("sample", "run", "--out", "new-store", *TINY_SAMPLE), ("run/model.safetensors",),
         truncate("run/model.safetensors", 1000)),
    Case("sample-config-resolution-a-string", ("sample", "run", "--out", "new-store", *TINY_SAMPLE),
         ("run/config.json", "resolution"), set_json("run/config.json", "model.resolution", "16")),
    Case("train-changed-setting-on-a-run", ("train", "data", "--out", "run", "--lr", "0.5", "--quiet"), ("lr", "0.5")),
    Case("publish-over-a-store", ("publish", "run", "store"), ("store",)),
    Case("report-config-model-a-number", ("report", "run", "-o", "report.html"), ("run/config.json", "model"),
         set_json("run/config.json", "model", 3)),
    Case("report-card-training-an-array", ("report", "run", "-o", "report.html"), ("run/model_card.json", "training"),
         set_json("run/model_card.json", "training", [])),
    Case("report-loss-history-bad-row", ("report", "run", "-o", "report.html"), ("run/loss_history.csv", "line 2"),
         write("run/loss_history.csv", "step,loss,lr,images_per_s\nfour,1,0.1,3\n")),
    Case("sample-new-store-without-count", ("sample", "run", "--out", "new-store"), ("--count",)),
]

STORES = [
    Case("store-header-not-json", ("info", "store"), ("store/header.json", "JSON"), write("store/header.json", "nope")),
    Case("store-header-an-array", ("info", "store"), ("store/header.json", "object"), write("store/header.json", "[]")),
    Case("store-header-newer-version", ("info", "store"), ("store/header.json", "version 2"),
         set_json("store/header.json", "version", 2)),
    Case("store-header-unknown-dtype", ("info", "store"), ("store/header.json", "int64"),
         set_json("store/header.json", "dtype", "int64")),
    Case("store-header-file-escapes", ("info", "store"), ("store/header.json", "arrays.x.file"),
         set_json("store/header.json", "arrays.x.file", "../x.f16")),
    Case("store-array-truncated", ("info", "store"), ("store/x.f16", "truncated"), truncate("store/x.f16", 100)),
    Case("store-array-missing", ("info", "store"), ("store/x.f16", "missing"), delete("store/x.f16")),
    Case("store-completeness-out-of-range", ("info", "store"), ("store/complete.json", "[0, 99]"),
         set_json("store/complete.json", "ranges", [[0, 99]])),
    Case("store-header-sampler-a-number", ("info", "store"), ("store/header.json", "sampler"),
         set_json("store/header.json", "sampler", 5)),
    Case("store-header-model-an-array", ("info", "store"), ("store/header.json", "model"),
         set_json("store/header.json", "model", [1])),
    Case("store-header-schedule-an-array", ("info", "store"), ("store/header.json", "schedule"),
         set_json("store/header.json", "schedule", [1])),
    Case("store-header-shard-a-number", ("info", "store"), ("store/header.json", "shard"),
         set_json("store/header.json", "shard", 3)),
    Case("store-header-timesteps-strings", ("info", "store"), ("store/header.json", "timesteps"),
         set_json("store/header.json", "steps.timesteps", ["a", "b", "c", "d"])),
    Case("store-header-nested-too-deep", ("info", "store"), ("store/header.json",),
         write("store/header.json", NESTED_JSON)),
    Case("store-header-integer-too-long", ("info", "store"), ("store/header.json", "5000 digits"),
         edit_text("store/header.json", '"num_samples": 4', f'"num_samples": {LONG_NUMBER}')),
    Case("sample-store-of-another-recording", ("sample", "run", "--out", "store", "--count", "4", "--sampler", "ddim",
                                               "--steps", "5", "--quiet"), ("store", "sampler.steps")),
    Case("merge-missing-part", ("sample", "--merge", "nowhere", "--out", "merged"), ("nowhere",)),
    Case("sample-count-beyond-any-store", ("sample", "run", "--out", "big", "--count", "1000000000000", "--quiet"),
         ("--count", "1,000,000")),
    Case("audit-store-missing", ("audit", "nowhere", "--data", "data"), ("nowhere",)),
    Case("sample-label-of-an-unconditional-model", ("sample", "run", "--out", "new-store", *TINY_SAMPLE, "--label", "a"),
         ("without labels", "--label")),
    Case("sample-guidance-nan", ("sample", "run", "--out", "new-store", *TINY_SAMPLE, "--guidance", "nan"),
         ("--guidance", "nan")),
    Case("sample-guidance-negative", ("sample", "run", "--out", "new-store", *TINY_SAMPLE, "--guidance", "-2"),
         ("--guidance -2",)),
    Case("sample-label-counts-do-not-add-up", ("sample", "run", "--out", "new-store", "--count", "3", "--labels",
                                               "a:1,b:1"), ("--labels", "add up to 2", "--count is 3")),
    Case("sample-label-mix-malformed", ("sample", "run", "--out", "new-store", "--labels", "a:one"), ("--labels", "a:one")),
    Case("sample-interpolate-malformed", ("sample", "run", "--out", "new-store", *TINY_SAMPLE, "--interpolate", "7"),
         ("--interpolate", "A:B")),
]

SCENES = [
    Case("scene-arrays-nested-too-deep", ("render", "s.toml", *RENDER), ("s.toml", "nested"), write("s.toml", NESTED_ARRAY)),
    Case("scene-integer-too-long", ("render", "s.toml", *RENDER), ("s.toml", "5000 digits"),
         write("s.toml", scene(f"seed = {LONG_NUMBER}\n"))),
    Case("scene-not-utf8", ("render", "s.toml", *RENDER), ("s.toml", "UTF-8"), write("s.toml", b"version = 1\n# \xff\n")),
    Case("scene-path-not-utf8", ("render", bad_name(b"s\xff.toml"), *RENDER), (".toml", "no such scene file")),
    Case("scene-label-of-an-unlabelled-store", ("render", "s.toml", *RENDER), ("grid[1].samples", "no labels"),
         write("s.toml", scene('samples = { label = "greek" }\n'))),
    Case("scene-label-not-a-string", ("render", "s.toml", *RENDER), ("grid[1].samples", "string"),
         write("s.toml", scene("samples = { label = [1] }\n"))),
    Case("scene-sample-range-huge", ("render", "s.toml", *RENDER), ("grid[1].samples", "65536"),
         write("s.toml", scene('samples = "0:99999999999999999"\n'))),
    Case("scene-sample-range-too-long", ("render", "s.toml", *RENDER), ("grid[1].samples",),
         write("s.toml", scene(f'samples = "0:{LONG_NUMBER}"\n'))),
    Case("scene-store-path-with-nul", ("render", "s.toml", *RENDER), ("grid[1].store", "NUL"),
         write("s.toml", scene().replace('"store"', '"st\\u0000ore"'))),
    Case("scene-store-damaged", ("render", "scene.toml", *RENDER), ("grid[1].store", "x.f16"), truncate("store/x.f16", 100)),
    Case("scene-file-too-large", ("render", "s.toml", *RENDER), ("s.toml", "too large"),
         sparse("s.toml", 65 << 20, b"version = 1\n#")),
    Case("scene-is-a-fifo", ("render", "s.toml", *RENDER), ("s.toml",), lambda ws: os.mkfifo(ws / "s.toml")),
    # Endless generation: [generate] checked before anything is sampled (`render --cycle` reads it too).
    Case("generate-unknown-key", ("render", "g.toml", *RENDER, "--cycle", "0"), ("g.toml", "generate.stepz", "steps"),
         write("g.toml", generated("stepz = 3\n"))),
    Case("generate-model-missing", ("render", "g.toml", *RENDER, "--cycle", "0"), ("g.toml", "generate.model", "nothing"),
         write("g.toml", generated().replace('model = "run"', 'model = "nothing"'))),
    Case("generate-model-not-a-run", ("render", "g.toml", *RENDER, "--cycle", "0"), ("generate.model", "config.json"),
         write("g.toml", generated().replace('model = "run"', 'model = "data"'))),
    Case("generate-steps-beyond-the-schedule", ("render", "g.toml", *RENDER, "--cycle", "0"),
         ("g.toml", "generate.steps 50", "10"), write("g.toml", generated().replace("steps = 2", "steps = 50"))),
    Case("generate-count-below-the-grid", ("render", "g.toml", *RENDER, "--cycle", "0"), ("generate.count", "4"),
         write("g.toml", generated("count = 2\n"))),
    Case("generate-keep-one", ("render", "g.toml", *RENDER, "--cycle", "0"), ("generate.keep", "2"),
         write("g.toml", generated("keep = 1\n"))),
    Case("generate-seed-a-string", ("render", "g.toml", *RENDER, "--cycle", "0"), ("generate.seed", "integer"),
         write("g.toml", generated('seed = "seven"\n'))),
    Case("generate-a-number", ("render", "g.toml", *RENDER, "--cycle", "0"), ("g.toml", "generate", "table"),
         write("g.toml", scene(top="version = 1\ngenerate = 3\n").replace('"store"', '"generated"'))),
    Case("generated-without-a-generate-table", ("render", "g.toml", *RENDER), ("grid[1].store", "--cycle"),
         write("g.toml", scene().replace('"store"', '"generated"'))),
    Case("generated-rendered-without-a-cycle", ("render", "g.toml", *RENDER), ("grid[1].store", "--cycle N"),
         write("g.toml", generated())),
    Case("cycle-without-a-rolling-store", ("render", "g.toml", *RENDER, "--cycle", "3"), ("--cycle 3", "rolling store"),
         write("g.toml", generated())),
    Case("cycle-negative", ("render", "g.toml", *RENDER, "--cycle", "-1"), ("--cycle", "-1"), write("g.toml", generated())),
    Case("info-rolling-store-recipe-not-json", ("info", "rolling"), ("rolling/rolling.json", "JSON"),
         write("rolling/rolling.json", "nope")),
    Case("show-keep-one", ("show", "scene.toml", "--log-dir", "log", "--keep", "1"), ("--keep 1", "at least 2")),
    Case("show-keep-not-a-size", ("show", "scene.toml", "--log-dir", "log", "--keep", "lots"), ("--keep", "lots")),
]

OPTIONS = [
    Case("frames-number-too-long", ("render", "scene.toml", *RENDER, "--frames", f"0:{LONG_NUMBER}"), ("--frames",)),
    Case("output-exists", ("render", "scene.toml", *RENDER), ("out.gif", "--overwrite"), write("out.gif", "mine\n")),
    Case("unknown-option", ("render", "--bogus"), ("--bogus",)),
    Case("unknown-command", ("frobnicate",), ("frobnicate",)),
    Case("audit-max-rows-zero", ("audit", "store", "--data", "data", "--max-rows", "0"), ("--max-rows", "0")),
    Case("audit-threshold-nan", ("audit", "store", "--data", "data", "--threshold", "nan"), ("--threshold", "nan")),
    Case("audit-output-is-a-folder", ("audit", "store", "--data", "data", "-o", "sheet.png"), ("sheet.png", "folder"),
         mkdir("sheet.png")),
    Case("audit-output-is-a-users-file", ("audit", "store", "--data", "data", "-o", "mine.png"), ("mine.png", "exists"),
         copy("data/img00.png", "mine.png")),
    Case("shard-out-of-range", ("sample", "run", "--out", "new-store", "--count", "2", "--shard", "3/2"), ("--shard", "3/2")),
    Case("channel-mults-not-integers", ("train", "data", "--out", "fresh", "--channel-mults", "1,x"),
         ("--channel-mults", "1,x")),
    Case("threads-zero", ("sample", "run", "--out", "new-store", "--count", "2", "--threads", "0"), ("--threads", "0")),
    Case("fps-beyond-the-scene-format", ("render", "scene.toml", *RENDER, "--fps", "1e9"), ("--fps", "1000")),
    Case("evaluate-json-is-a-folder", ("evaluate", "run", "--data", "data", "--json", "ev.json", "--quiet"),
         ("--json ev.json", "folder"), mkdir("ev.json")),
    Case("evaluate-json-is-a-users-file", ("evaluate", "run", "--data", "data", "--json", "mine.json", "--quiet"),
         ("--json mine.json", "exists"), write("mine.json", '{"mine": true}\n')),
    Case("cache-folder-is-a-file", ("render", *RENDER, "--frames", "0:1"), ("cache", "not a folder"),
         write("cache", "mine\n")),
    Case("report-evaluation-integer-too-long", ("report", "run", "-o", "report.html", "--evaluation", "ev.json"),
         ("ev.json", "5000 digits"), write("ev.json", f'{{"format": "entropic-evaluation", "x": {LONG_NUMBER}}}')),
    Case("report-run-name-not-utf8", ("report", bad_name(b"r\xffun"), "-o", "report.html"), ("r\\xffun", "UTF-8"),
         rename("run", b"r\xffun")),
    Case("report-markdown-run-name-not-utf8", ("report", bad_name(b"r\xffun"), "-o", "report.md"), ("r\\xffun", "UTF-8"),
         rename("run", b"r\xffun")),
    Case("report-output-exists", ("report", "run", "-o", "report.html"), ("report.html", "--overwrite"),
         write("report.html", "mine\n")),
    Case("join-parts-missing", ("join", "a.mp4", "b.mp4", "-o", "joined.mp4"), ("a.mp4",)),
    Case("join-parts-not-videos", ("join", "a.mp4", "b.mp4", "-o", "joined.mp4"), ("a.mp4", "not a readable video"),
         both(write("a.mp4", "text\n"), write("b.mp4", "text\n"))),
    Case("info-not-a-video", ("info", "notes.mp4"), ("notes.mp4",), write("notes.mp4", "text\n")),
    Case("info-on-a-fifo", ("info", "pipe"), ("pipe", "not a regular file"), lambda ws: os.mkfifo(ws / "pipe")),
    Case("info-unknown-folder", ("info", "mine"), ("mine", "header.json"), write("mine/notes.txt", "mine\n")),
    Case("show-hours-malformed", ("show", "scene.toml", "--log-dir", "log", "--hours", "mon-fri 25:00-18:00"),
         ("--hours", "25:00")),
    Case("show-epoch-not-a-moment", ("show", "scene.toml", "--log-dir", "log", "--epoch", "soon"), ("--epoch", "soon")),
    Case("show-epoch-year-one", ("show", "scene.toml", "--log-dir", "log", "--epoch", "0001-01-01"),
         ("--epoch", "0001-01-01")),
    Case("show-epoch-out-of-range", ("show", "scene.toml", "--log-dir", "log", "--epoch", "1e12"), ("--epoch", "1970")),
    Case("show-fade-negative", ("show", "scene.toml", "--log-dir", "log", "--fade", "-2"), ("--fade", "-2")),
    Case("show-viewport-not-four", ("show", "scene.toml", "--log-dir", "log", "--viewport", "1,2"), ("--viewport",)),
    Case("show-span-and-screens", ("show", "scene.toml", "--log-dir", "log", "--span", "--screen", "1"),
         ("--span", "--screen")),
    Case("show-status-with-a-scene", ("show", "scene.toml", "--status", "--log-dir", "log"), ("--status", "SCENE")),
    Case("show-scene-missing", ("show", "nothing.toml", "--log-dir", "log"), ("nothing.toml", "no such scene")),
]

CORPUS = IMAGES + MANIFESTS + RUNS + STORES + SCENES + OPTIONS


def _params() -> list[Any]:
    """The corpus as pytest parameters, a case that fails in a file owned elsewhere marked xfail (strict)."""
    return [
        pytest.param(case, id=case.id, marks=[pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else [])
        for case in CORPUS
    ]


# ---------------------------------------------------------------------------------- running


def snapshot(root: Path) -> dict[bytes, tuple[Any, ...]]:
    """Every entry under ``root``: its kind and content (large files: size, mtime and both ends)."""
    out: dict[bytes, tuple[Any, ...]] = {}
    base = os.fsencode(root)
    for directory, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, base)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir",)
            elif not os.path.isfile(path):
                out[rel] = ("special", st.st_mode)
            elif st.st_size > LARGE_FILE:
                with open(path, "rb") as f:
                    head = f.read(1 << 20)
                    f.seek(-(1 << 20), os.SEEK_END)
                    tail = f.read()
                out[rel] = ("large", st.st_size, st.st_mtime_ns, hashlib.sha256(head + tail).hexdigest())
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
    return out


@dataclass
class Outcome:
    returncode: int
    stderr: str
    before: dict[bytes, tuple[Any, ...]]
    after: dict[bytes, tuple[Any, ...]]


def run_case(case: Case, template: Path, work: Path) -> Outcome:
    """Copy the workspace, spoil it, run the command in it, and look at everything again."""
    ws = work / "ws"
    shutil.copytree(template, ws, symlinks=True)
    if case.setup is not None:
        case.setup(ws)
    before = snapshot(ws)
    env = {k: v for k, v in os.environ.items() if k not in ("ENTROPIC_DEBUG", "DISPLAY", "WAYLAND_DISPLAY")}
    env["ENTROPIC_CACHE_DIR"] = str(ws / "cache")  # inside the workspace: anything written there counts
    result = subprocess.run(
        [sys.executable, "-c", "from render.cli import main; main()", *case.args],
        cwd=ws, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S,
    )
    return Outcome(result.returncode, result.stderr.decode("utf-8", "backslashreplace"), before, snapshot(ws))


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_run) -> Path:
    """The workspace every case starts from: data/ (12 images), run/ (4 steps), store/ (4 samples), scene.toml."""
    from diffusion.record import RecordSettings, record_run

    root = tmp_path_factory.mktemp("bad-inputs") / "template"
    root.mkdir()
    shutil.copytree(tiny_run.parent / "data", root / "data")
    shutil.copytree(tiny_run, root / "run")
    record_run(root / "run", root / "store", RecordSettings(count=4, sampler="ddim", steps=3), progress=False)
    (root / "scene.toml").write_text(scene(), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def outcomes(request, template, tmp_path_factory) -> dict[str, Future]:
    """Each selected case started in its own copy of the workspace, three at a time."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is sys.modules[__name__] and hasattr(item, "callspec") and "case" in item.callspec.params
    ]
    pool = ThreadPoolExecutor(max_workers=3)
    futures = {case.id: pool.submit(run_case, case, template, tmp_path_factory.mktemp(case.id)) for case in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_the_corpus_is_large_and_its_ids_unique():
    assert len(CORPUS) >= 60
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_refused_in_one_line_touching_nothing(case: Case, outcomes):
    outcome = outcomes[case.id].result()
    lines = outcome.stderr.strip().splitlines()
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.returncode > 0, (outcome.returncode, outcome.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("entropic: error: "), outcome.stderr[-3000:]
    for name in case.names:
        assert name in lines[0], (name, lines[0])
    changed = sorted(set(outcome.before.items()) ^ set(outcome.after.items()))
    assert outcome.before == outcome.after, f"files changed: {changed[:5]}"
