"""The default dataset: Hershey vector-font glyphs drawn as centred stroke drawings.

The Hershey fonts were digitised by Dr. A. V. Hershey at the U.S. National Bureau of
Standards in the 1960s and are in the public domain (with the attribution notice below).
The ``Hershey-Fonts`` package on PyPI ships about 3,000 of them: Latin, Greek, Cyrillic,
Japanese, music, mathematical, meteorological and cartographic symbols. Thin lines on white
space, like the cartoon scans of the original work.

How a glyph becomes an image (``GlyphStyle``):

* every font is drawn at one scale, ``(resolution - 2 * margin) / 32`` pixels per Hershey unit
  (the Hershey cell is 32 units tall), reduced only when a glyph would not fit, so a full
  stop stays small and a capital fills the frame;
* the glyph's drawn bounding box is centred in the frame;
* strokes are drawn black on white with round joints and caps, ``stroke_width`` pixels wide,
  at ``supersample`` times the resolution and box-filtered down (anti-aliased, deterministic);
* optional ``jitter`` variants apply a small seeded affine warp (rotation, scale, shear,
  offset) to the stroke coordinates, for augmentation;
* identical images are kept once (the same glyph appears in several fonts).

Every drawing is labelled by its font's set (:data:`HERSHEY_SETS`): six classes a viewer tells
apart at a glance. Fonts are visited set by set, Latin first, so a drawing that several sets
share (the digits and punctuation of the Greek and Cyrillic fonts) is kept, and labelled, as
Latin. A font that a later Hershey-Fonts release adds is labelled "other".
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from diffusion.common.errors import EntropicError

HERSHEY_CREATOR = "Dr. A. V. Hershey, U.S. National Bureau of Standards"
HERSHEY_LICENSE = (
    "Public domain (Hershey fonts). Attribution notice: 'The Hershey Fonts were originally "
    "created by Dr. A. V. Hershey while working at the U. S. National Bureau of Standards.'"
)
HERSHEY_CELL_UNITS = 32.0

# The label of each font (the default dataset's classes), in the order the sets are visited.
HERSHEY_SETS: dict[str, tuple[str, ...]] = {
    "latin": ("cursive", "futural", "futuram", "rowmand", "rowmans", "rowmant", "scriptc", "scripts",
              "timesi", "timesib", "timesr", "timesrb"),
    "gothic": ("gothgbt", "gothgrt", "gothiceng", "gothicger", "gothicita", "gothitt"),
    "greek": ("greek", "greekc", "greeks", "timesg"),
    "cyrillic": ("cyrilc_1", "cyrillic"),
    "japanese": ("japanese",),
    # Music, mathematics, astrology, weather and map symbols: one class, as the music font's own
    # drawings are only 18 once its shared digits and punctuation are Latin.
    "symbols": ("astrology", "markers", "mathlow", "mathupp", "meteorology", "music", "symbolic"),
}
OTHER_SET = "other"

Stroke = list[tuple[float, float]]

# Bounds of GlyphStyle: beyond them a drawing runs out of memory, or the dataset never ends.
MAX_RESOLUTION = 1024
MAX_SUPERSAMPLE = 8
MAX_JITTER = 100


@dataclass(frozen=True)
class GlyphStyle:
    """How glyphs are drawn; every field is recorded in the dataset's manifest sources."""

    resolution: int = 64
    stroke_width: float = 1.6
    margin: int = 6
    supersample: int = 4
    jitter: int = 0  # extra warped variants per glyph
    seed: int = 0

    def validate(self) -> None:
        """EntropicError naming the first setting that cannot be drawn (or would never finish)."""
        if self.resolution < 8:
            raise EntropicError(f"resolution {self.resolution} is too small for glyphs (use 16 or more)")
        if self.resolution > MAX_RESOLUTION:
            # Drawn at supersample x the side: 1024 px is already 16 million pixels per glyph.
            raise EntropicError(f"resolution {self.resolution} is too large for glyphs (at most {MAX_RESOLUTION})")
        if not 1 <= self.supersample <= MAX_SUPERSAMPLE:
            raise EntropicError(f"supersample {self.supersample} must be in 1..{MAX_SUPERSAMPLE}")
        if not 0 < self.stroke_width <= self.resolution / 4:
            raise EntropicError(f"stroke width {self.stroke_width} must be in (0, {self.resolution / 4}]")
        if not 0 <= self.margin < self.resolution // 2 - 2:
            raise EntropicError(f"margin {self.margin} leaves no room at resolution {self.resolution}")
        if not 0 <= self.jitter <= MAX_JITTER:
            raise EntropicError(
                f"jitter {self.jitter} must be in 0..{MAX_JITTER} (each variant is another drawing of every glyph)"
            )


@dataclass(frozen=True)
class Glyph:
    font: str
    code: int
    strokes: tuple[tuple[tuple[float, float], ...], ...]


def hershey_package_version() -> str:
    from importlib.metadata import version

    return version("Hershey-Fonts")


def font_set(font: str) -> str:
    """The label of a Hershey font: its set in :data:`HERSHEY_SETS`, or "other"."""
    for name, fonts in HERSHEY_SETS.items():
        if font in fonts:
            return name
    return OTHER_SET


def _visit_order(font: str) -> tuple[int, str]:
    sets = list(HERSHEY_SETS) + [OTHER_SET]
    return sets.index(font_set(font)), font


def iter_hershey_glyphs() -> Iterator[Glyph]:
    """Every glyph with at least one stroke: fonts set by set (:data:`HERSHEY_SETS` order), by name
    within a set, glyphs in code order."""
    try:
        from HersheyFonts import HersheyFonts
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise EntropicError("the Hershey-Fonts package is missing: pip install Hershey-Fonts") from err
    for font in sorted(HersheyFonts().default_font_names, key=_visit_order):
        loader = HersheyFonts()
        loader.load_default_font(font)
        for char, glyph in sorted(loader.all_glyphs.items()):
            strokes = tuple(tuple((float(x), float(y)) for x, y in s) for s in glyph.strokes if len(s) > 0)
            if strokes:
                yield Glyph(font=font, code=ord(char), strokes=strokes)


def _warp(strokes, rng: np.random.Generator):
    """A small random affine warp about the glyph's centre."""
    angle = math.radians(rng.normal(0.0, 5.0))
    scale = math.exp(rng.normal(0.0, 0.06))
    shear = rng.normal(0.0, 0.08)
    shift = rng.normal(0.0, 0.8, size=2)
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    matrix = np.array([[c, -s + shear], [s, c]])
    points = np.concatenate([np.asarray(p) for p in strokes])
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    return tuple(tuple(map(tuple, (np.asarray(p) - centre) @ matrix.T + centre + shift)) for p in strokes)


def draw_glyph(strokes, style: GlyphStyle) -> np.ndarray:
    """Draw strokes (Hershey units) as a centred, anti-aliased ``uint8 [R, R]`` image."""
    r, k = style.resolution, style.supersample
    points = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    lo, hi = points.min(axis=0), points.max(axis=0)
    room = r - 2 * style.margin - style.stroke_width
    extent = max(float((hi - lo).max()), 1e-6)
    scale = min(room / HERSHEY_CELL_UNITS * 32.0 / 28.0, room / extent) * k
    centre = (lo + hi) / 2
    width = max(1, round(style.stroke_width * k))
    canvas = Image.new("L", (r * k, r * k), 255)
    draw = ImageDraw.Draw(canvas)
    for stroke in strokes:
        xy = [((x - centre[0]) * scale + r * k / 2, (y - centre[1]) * scale + r * k / 2) for x, y in stroke]
        if len(xy) > 1:
            draw.line(xy, fill=0, width=width, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=0)
    return np.asarray(canvas.reduce(k), dtype=np.uint8)


def render_glyph_images(style: GlyphStyle) -> Iterator[tuple[str, str, np.ndarray]]:
    """Yield ``(relative file name, source description, image)`` for the default dataset.

    Identical images are yielded once. Jittered variants are seeded by (style.seed, font, code,
    variant), so the set does not depend on iteration order.
    """
    style.validate()
    seen: set[bytes] = set()
    package = f"Hershey-Fonts {hershey_package_version()} (PyPI)"
    for glyph in iter_hershey_glyphs():
        for variant in range(1 + style.jitter):
            strokes = glyph.strokes
            if variant:
                key = f"{style.seed}/{glyph.font}/{glyph.code}/{variant}".encode()
                rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
                strokes = _warp(strokes, rng)
            image = draw_glyph(strokes, style)
            digest = hashlib.sha256(image.tobytes()).digest()
            if digest in seen:
                continue
            seen.add(digest)
            suffix = f"-v{variant}" if variant else ""
            name = f"{glyph.font}/{glyph.font}-{glyph.code:04x}{suffix}.png"
            source = (
                f"Hershey font '{glyph.font}', glyph {glyph.code}, via {package}; drawn by entropic "
                f"at {style.resolution}px, stroke {style.stroke_width}px, margin {style.margin}px"
                + (f", jitter variant {variant} (seed {style.seed})" if variant else "")
            )
            yield name, source, image


def glyph_key(name: str) -> str:
    """The glyph behind image ``name``: "font/font-00c4-v1.png" -> "font/font-00c4"."""
    return re.sub(r"(-v\d+)?\.png$", "", name)


def is_held_out(name: str, every: int) -> bool:
    """Whether the glyph behind image ``name`` is held out: about one glyph in ``every``.

    Chosen by a hash of the glyph (font and code), not of the variant, so a held-out glyph's
    jitter variants are held out with it. ``every`` = 0 holds out none.
    """
    if every <= 0:
        return False
    return int.from_bytes(hashlib.sha256(glyph_key(name).encode()).digest()[:8], "little") % every == 0


def datasheet_answers(
    style: GlyphStyle, part: str, own: int, other: str | None, other_count: int, every: int
) -> dict[str, str]:
    """The default dataset's answers to its datasheet's author questions (see
    :mod:`diffusion.data.datasheet_answers`): what entropic knows of the Hershey glyphs.

    ``part`` is "training" or "held-out" (the folder being written, with ``own`` images);
    ``other`` names the other part's folder (None: nothing held out), holding ``other_count``.
    """
    jitter = (f", plus {style.jitter} slightly warped variant{'s' if style.jitter != 1 else ''} of each (seed "
              f"{style.seed})") if style.jitter else ""
    if other is None:
        splits = ("None set aside: `entropic dataset default FOLDER --held-out OTHER` keeps about one glyph in "
                  f"{every} out of training, for measuring bits/dim on images the model never saw.")
    elif part == "training":
        splits = (f"Yes: this folder is the training part ({own:,} images). About one glyph in {every}, with all its "
                  f"variants, chosen by a hash of its font and code, was set aside in the folder `{other}` "
                  f"({other_count:,} images, with its own manifest), for measuring bits/dim on images the model "
                  f"never saw: `entropic evaluate RUN --data {other}`.")
    else:
        splits = (f"Yes: this folder is the held-out part ({own:,} images): about one glyph in {every}, with all "
                  f"its variants, chosen by a hash of its font and code, kept out of the training part `{other}` "
                  f"({other_count:,} images), for measuring bits/dim on images a model never saw. Do not train on it.")
    return {
        "motivation.purpose": (
            "To give entropic a default dataset that anyone can train a model on without images of their own: "
            "clearly public-domain line drawings, installable offline, thin strokes on white like the cartoon scans "
            "of the original work, in six classes a viewer tells apart at a glance, so that a model can be steered "
            "by label."
        ),
        "motivation.creators": (
            "Drawn by `entropic dataset default` from the Hershey vector fonts, which Dr. A. V. Hershey digitised "
            "in the 1960s (the attribution notice names the U.S. National Bureau of Standards)."
        ),
        "motivation.funding": (
            "Nobody funded this dataset: a program draws it. The fonts were made in U.S. government service."
        ),
        "composition.instances": (
            "Glyphs of the Hershey fonts, each a centred black stroke drawing on white: Latin, blackletter "
            "(gothic), Greek and Cyrillic letters, digits and punctuation, Japanese kana and kanji, and music, "
            "mathematics, astrology, weather and map symbols."
        ),
        "composition.sample": (
            "Every glyph with at least one stroke of the fonts that the Hershey-Fonts package ships" + jitter
            + "; a drawing that several fonts share is kept once"
            + ("." if other is None else ", and the glyphs are split between training and held-out (see Splits).")
        ),
        "composition.splits": splits,
        "composition.sensitive": "No: letters, digits and symbols.",
        "composition.people": "No.",
        "collection.how": (
            "Drawn by entropic from the stroke coordinates the Hershey-Fonts package (PyPI) ships, nothing "
            f"downloaded: every glyph centred at {style.resolution} x {style.resolution} px, with round pen strokes "
            f"{style.stroke_width:g} px wide and a {style.margin} px margin, {style.supersample}x supersampled; each "
            "record's source names the font, the glyph and these settings."
        ),
        "collection.who": "No one by hand: `entropic dataset default` draws the images; no one was paid for it.",
        "collection.timeframe": (
            "The fonts were digitised in the 1960s (described in Dr. Hershey's 1967 report \"Calligraphy for "
            "Computers\"); the images are drawn, the same bytes each time, whenever `entropic dataset default` runs."
        ),
        "collection.consent": (
            "No consent was needed: the Hershey fonts are in the public domain, and their attribution notice is "
            "carried in every image's licence. No people are shown."
        ),
        "preprocessing.done": (
            f"When drawn: anti-aliased by drawing at {style.supersample}x and box-filtering down; identical drawings "
            "(the same glyph in several fonts) dropped; each labelled by its font's set (latin, gothic, greek, "
            "cyrillic, japanese, symbols), a drawing that several sets share (the digits and punctuation of the "
            "Greek and Cyrillic fonts) as latin."
        ),
        "uses.used": (
            "Made with the default settings, it is the dataset of entropic's default model (assets/model)."
            if part == "training" else
            "Made with the default settings, it is the held-out set of the default model's bits/dim "
            "(assets/model/evaluation.json)."
        ),
        "uses.other": "Other small generative models, glyph classification, experiments with stroke drawings.",
        "uses.impact": (
            "The classes are unbalanced (latin is about half of the images); every drawing has the same pen width "
            "and no texture; similar glyphs of different fonts remain (only identical drawings were dropped)."
        ),
        "uses.not_for": (
            "As a sample of handwriting or of people's drawings: these are one designer's vector letterforms of "
            "the 1960s, drawn by a program."
        ),
        "distribution.shared": (
            "The images need not be passed on: `entropic dataset default` makes the same files (and so the same "
            "manifest SHA-256) on any machine with the same Hershey-Fonts release."
        ),
        "distribution.restrictions": "None known: public domain, with the attribution notice.",
        "maintenance.maintainer": "entropic's maintainers, as part of entropic; the fonts come from Hershey-Fonts on PyPI.",
        "maintenance.updates": (
            "A change to the drawing (entropic) or to the fonts (Hershey-Fonts) changes the images and so the "
            "manifest's SHA-256."
        ),
        "maintenance.contributions": "Through entropic (diffusion/data/hershey_glyphs.py).",
    }


def write_default_dataset(
    folder,
    style: GlyphStyle = GlyphStyle(),
    overwrite: bool = False,
    held_out=None,
    held_out_every: int = 20,
) -> tuple[int, int]:
    """Draw the Hershey glyphs into ``folder`` with a provenance manifest and a datasheet.

    The datasheet (DATASHEET.md, :mod:`diffusion.data.datasheet`) carries the answers entropic
    knows (:func:`datasheet_answers`), kept in datasheet-answers.toml beside it. With ``held_out`` (a second folder), about one glyph in ``held_out_every`` goes there
    instead (:func:`is_held_out`), with its own manifest: images the model never sees, for
    measuring bits/dim honestly. Returns (training images, held-out images).

    Each folder is assembled under a temporary name beside it and renamed when complete, so
    an interrupted run leaves nothing that looks like a dataset. An existing non-empty folder
    is kept unless ``overwrite`` is true.
    """
    import shutil
    from pathlib import Path

    from diffusion.common.atomic import remove_stale_temporaries, replace_dir, sha256_bytes, temporary_path
    from diffusion.data.datasheet import write_datasheet
    from diffusion.data.datasheet_answers import write_answers
    from diffusion.data.manifest import ImageRecord, write_manifest

    targets = [Path(folder)] + ([Path(held_out)] if held_out is not None else [])
    if len(targets) == 2:
        a, b = (t.resolve() for t in targets)
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            raise EntropicError(f"--held-out {held_out} and {folder} must be separate folders, neither inside the other")
    for target in targets:
        remove_stale_temporaries(target)  # a killed run's half-drawn folder; a killed swap's old folder put back
        if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
            raise EntropicError(f"{target} already exists and is not empty; choose another folder or add --force")
    style.validate()
    tmps = [temporary_path(t) for t in targets]
    records: list[list] = [[] for _ in targets]
    try:
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        for name, source, image in render_glyph_images(style):
            which = 1 if held_out is not None and is_held_out(name, held_out_every) else 0
            path = tmps[which] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(path, format="PNG", optimize=False)
            records[which].append(
                ImageRecord(
                    file=name,
                    sha256=sha256_bytes(path.read_bytes()),
                    creator=HERSHEY_CREATOR,
                    source=source,
                    license=HERSHEY_LICENSE,
                    label=font_set(name.split("/")[0]),
                )
            )
        for k, (tmp, recs, target) in enumerate(zip(tmps, records, targets)):
            write_manifest(tmp, recs)
            other = targets[1 - k].name if len(targets) == 2 else None
            write_answers(tmp, datasheet_answers(style, ("training", "held-out")[k], len(recs), other,
                                                 len(records[1 - k]) if other else 0, held_out_every))
            write_datasheet(tmp, name=target.name)  # named as it will be once renamed into place
            replace_dir(tmp, target)  # the old folder is deleted only once the new one is in place
    finally:
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
    return len(records[0]), (len(records[1]) if held_out is not None else 0)
