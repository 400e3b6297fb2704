"""The process report: one self-contained page on how a run was made, published beside the work.

``write_report(RUN, "report.html")`` gathers, for one run directory made by ``entropic train``:
the model card's summary and architecture, the dataset credits (licences, creators, manifest
hash), the training record (steps, wall time, sessions, energy, labelled *measured* or
*estimate*), the loss curve, the sample sheets over time, the bits/dim of an evaluation and
the memorisation audit (when they have been run; otherwise a line with the command that
would), and a footer of hashes that ties the page to the exact files.

Three steps, each a pure function of the one before:

1. :func:`build_report` reads the files into a small document model (sections of
   paragraphs, key/value tables and PNG figures). Every string read from a file stays plain
   text here;
2. :func:`build_report_html` or :func:`build_report_markdown` renders that model, escaping
   every string (``html.escape``), so nothing in a card or a JSON file can inject markup;
3. :func:`write_report` writes the result atomically and refuses to replace a file unless
   told to.

The HTML is one file: CSS inline, images as base64 ``data:`` URIs, no script, no link out.
The Markdown variant writes ``report.md`` and its PNGs in ``report_files/`` beside it. The
page carries no date, so the same inputs give the same bytes.

torch is never imported (this module is for machines that only publish): RUN/config.json
is read with ``diffusion.runs.layout.read_config``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import shlex
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from diffusion.common.atomic import atomic_write_bytes, atomic_write_text, fsync_dir, sha256_file
from diffusion.common.errors import EntropicError
from diffusion.figures.loss_curve import loss_curve_png
from diffusion.runs.layout import CARD_JSON, CONFIG_FILE, LOSS_FILE, SAMPLES_DIR, WEIGHTS_FILE, read_config

__all__ = [
    "Code",
    "Paragraph",
    "Table",
    "Figure",
    "Section",
    "Report",
    "read_run_config",
    "read_card",
    "read_evaluation",
    "read_audit",
    "select_sheets",
    "build_report",
    "build_report_html",
    "build_report_markdown",
    "write_report",
    "MAX_SHEETS",
]

CARD_FORMAT = "entropic-model-card"
EVALUATION_FILE = "evaluation.json"
AUDIT_FILE = "audit.json"
EVALUATION_FORMAT = "entropic-evaluation"
AUDIT_FORMAT = "entropic-audit"

MAX_SHEETS = 12  # sample sheets shown at most, spread evenly over the run
FROM_SCRATCH = "trained from scratch (random initialisation, no pretrained weights)"
SHEET_NAME = re.compile(r"^step_(\d+)\.png$")


# ----------------------------------------------------------------------------- document model


@dataclass(frozen=True)
class Code:
    """Inline monospace text: a command, a hash, a path."""

    text: str


Inline = Union[str, Code]


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text and code parts.

    ``tone``: "" | "note" (a part not measured yet) | "warning" | "verdict" (the audit's
    outcome, prominent) | "alert" (a prominent warning: samples flagged as near-copies).
    """

    parts: tuple[Inline, ...]
    tone: str = ""


@dataclass(frozen=True)
class Table:
    """Rows of (label, value parts): the figures of a section."""

    rows: tuple[tuple[str, tuple[Inline, ...]], ...]


@dataclass(frozen=True)
class Figure:
    """A PNG with its caption; ``name`` is its file name in the Markdown variant."""

    png: bytes
    width: int
    height: int
    caption: str
    alt: str
    name: str


@dataclass(frozen=True)
class FigureGrid:
    """Figures shown side by side (the sample sheets over time)."""

    figures: tuple[Figure, ...]


Block = Union[Paragraph, Table, Figure, FigureGrid]


@dataclass(frozen=True)
class Section:
    """A headed part of the page."""

    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Report:
    """The whole page: title, lead paragraph, sections and footer lines."""

    title: str
    lead: str
    sections: tuple[Section, ...]
    footer: tuple[tuple[Inline, ...], ...] = field(default_factory=tuple)

    @property
    def figures(self) -> list[Figure]:
        """Every figure in page order."""
        out: list[Figure] = []
        for section in self.sections:
            for block in section.blocks:
                if isinstance(block, Figure):
                    out.append(block)
                elif isinstance(block, FigureGrid):
                    out.extend(block.figures)
        return out


def _row(label: str, *parts: Inline) -> tuple[str, tuple[Inline, ...]]:
    return (label, tuple(parts))


def _para(*parts: Inline, tone: str = "") -> Paragraph:
    return Paragraph(tuple(parts), tone)


# ----------------------------------------------------------------------------- reading the inputs


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; one EntropicError naming the file otherwise."""
    if not path.is_file():
        raise EntropicError(f"{path}: no such {what} file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EntropicError(f"{path}: unreadable {what} ({err})") from None
    if not isinstance(data, dict):
        raise EntropicError(f"{path}: not a {what} (expected a JSON object)")
    return data


def _check_format(path: Path, data: Mapping[str, Any], fmt: str, what: str) -> None:
    if data.get("format") != fmt:
        raise EntropicError(f"{path}: key 'format' is {data.get('format')!r}, expected {fmt!r} (not {what})")
    if data.get("version") != 1:
        raise EntropicError(f"{path}: key 'version' is {data.get('version')!r}; this entropic reads version 1")


def _require(path: Path, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``data[key]``, which must exist and be of ``kind`` (a bool is not a number here)."""
    if key not in data:
        raise EntropicError(f"{path}: missing key {key!r}")
    value = data[key]
    numeric = kind is int or kind is float or kind == (int, float)
    if (numeric and isinstance(value, bool)) or not isinstance(value, kind):
        raise EntropicError(f"{path}: key {key!r} has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise EntropicError(f"{path}: key {key!r} is not a finite number ({value!r})")
    return value


def read_run_config(run: str | os.PathLike) -> dict[str, Any]:
    """RUN/config.json, checked (:func:`diffusion.runs.layout.read_config`); a missing RUN or a file is refused."""
    run = Path(run)
    if not run.exists():
        raise EntropicError(f"{run}: no such run directory")
    if not run.is_dir():
        raise EntropicError(f"{run}: not a run directory (it is a file)")
    return read_config(run)


def read_card(run: str | os.PathLike) -> dict[str, Any]:
    """RUN/model_card.json: format, version and the sections the report reads (all objects)."""
    path = Path(run) / CARD_JSON
    if not path.is_file():
        raise EntropicError(
            f"{path}: missing (training has not reached its first checkpoint); resume it with "
            f"`entropic train DATA --out {run}`"
        )
    card = _read_json_object(path, "model card")
    _check_format(path, card, CARD_FORMAT, "a model card")
    for key in ("dataset", "model", "training"):
        _require(path, card, key, dict)
    for key in ("energy", "hardware", "weights"):
        if key in card and not isinstance(card[key], dict):
            raise EntropicError(f"{path}: key {key!r} has the wrong type ({type(card[key]).__name__})")
    return card


def read_evaluation(path: str | os.PathLike) -> dict[str, Any]:
    """An evaluation JSON (``entropic evaluate RUN --data HELDOUT --json FILE``), checked."""
    path = Path(path)
    data = _read_json_object(path, "evaluation")
    _check_format(path, data, EVALUATION_FORMAT, "an evaluation written by `entropic evaluate --json`")
    for key in ("bits_per_dim", "stderr", "prior_bpd", "decoder_bpd", "terms_bpd"):
        _require(path, data, key, (int, float))
    for key in ("num_images", "timesteps", "timesteps_evaluated"):
        _require(path, data, key, int)
    if "data" in data and not isinstance(data["data"], dict):
        raise EntropicError(f"{path}: key 'data' has the wrong type ({type(data['data']).__name__})")
    return data


def read_audit(path: str | os.PathLike) -> dict[str, Any]:
    """An audit JSON (written next to its sheet by ``entropic audit``), checked."""
    path = Path(path)
    data = _read_json_object(path, "audit")
    _check_format(path, data, AUDIT_FORMAT, "an audit written by `entropic audit`")
    _require(path, data, "threshold", (int, float))
    for key in ("neighbourhood", "num_samples", "num_training"):
        _require(path, data, key, int)
    flagged = _require(path, data, "flagged", list)
    entries = _require(path, data, "entries", list)
    if not all(isinstance(i, int) for i in flagged):
        raise EntropicError(f"{path}: key 'flagged' must list sample numbers")
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise EntropicError(f"{path}: entries[{k}] is not an object")
        for key in ("relative", "d1"):
            _require(path, entry, key, (int, float))
    return data


def audit_sheet_path(audit_json: str | os.PathLike, recorded: str) -> Path | None:
    """The audit's sheet PNG: the recorded path if it exists, else the same name beside the JSON.

    A relative recorded path is taken relative to the JSON's folder first (the audit may have
    been run from another working directory, or the folder moved since).
    """
    folder = Path(audit_json).parent
    if not recorded:
        return None
    rec = Path(recorded)
    candidates = [rec] if rec.is_absolute() else [folder / rec, rec]
    candidates.append(folder / rec.name)
    return next((c for c in candidates if c.is_file()), None)


def _png_facts(data: bytes, where: Path) -> tuple[int, int]:
    """Width and height of PNG ``data``; EntropicError naming ``where`` if it is no PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise EntropicError(f"{where}: not a PNG image ({im.format})")
            size = im.size
            im.verify()
    except EntropicError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise EntropicError(f"{where}: not a readable PNG image ({err})") from None
    return size


def _read_png(path: Path, caption: str, alt: str, name: str) -> Figure:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EntropicError(f"{path}: unreadable ({err.strerror or err})") from None
    width, height = _png_facts(data, path)
    return Figure(data, width, height, caption, alt, name)


def list_sheets(run: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every RUN/samples/step_NNNNNNN.png as (step, path), by step."""
    folder = Path(run) / SAMPLES_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        m = SHEET_NAME.match(path.name)
        if m and path.is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def select_sheets(items: Sequence[Any], max_count: int = MAX_SHEETS) -> list[Any]:
    """At most ``max_count`` of ``items``, spread evenly, always the first and the last."""
    n = len(items)
    if n <= max_count:
        return list(items)
    if max_count < 2:
        return [items[-1]] if max_count == 1 else []
    picks = sorted({round(k * (n - 1) / (max_count - 1)) for k in range(max_count)})
    return [items[i] for i in picks]


# ----------------------------------------------------------------------------- formatting


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _plain(value)


def _plain(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "unknown"
    s = int(round(value))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _joules(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "unknown"
    return f"{value / 3.6e6:.4g} kWh ({value:,.0f} J)"


def _config_text(config: Mapping[str, Any]) -> str:
    """A config dict as ``key value`` pairs, lists joined with commas, in key order."""
    parts = []
    for key in sorted(config):
        value = config[key]
        shown = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else _plain(value)
        parts.append(f"{key} {shown or 'none'}")
    return "; ".join(parts)


def _q(path: Any) -> str:
    return shlex.quote(str(path))


# ----------------------------------------------------------------------------- the sections


def _summary_section(card: Mapping[str, Any], config: Mapping[str, Any]) -> Section:
    model = card["model"]
    schedule = model.get("schedule") if isinstance(model.get("schedule"), dict) else config.get("schedule", {})
    arch = model.get("config") if isinstance(model.get("config"), dict) else config.get("model", {})
    rows = [
        _row("Initialisation", FROM_SCRATCH),
        _row("Architecture", f"{_plain(model.get('architecture'))}, {_int(model.get('parameters'))} parameters"),
        _row("Configuration", _config_text(arch)),
        _row("Noise schedule", _config_text(schedule) if isinstance(schedule, dict) else _plain(schedule)),
        _row("Prediction", _plain(model.get("prediction", config.get("prediction")))),
    ]
    weights = card.get("weights") or {}
    if weights:
        rows.append(_row("Weights", f"{_plain(weights.get('file'))} ({_plain(weights.get('kind'))})"))
    blocks: list[Block] = []
    if card.get("summary"):
        blocks.append(_para(str(card["summary"])))
    blocks.append(Table(tuple(rows)))
    return Section("Model", tuple(blocks))


def _dataset_section(card: Mapping[str, Any]) -> Section:
    ds = card["dataset"]
    licences = ds.get("license_summary") or {}
    creators = ds.get("creators") or []
    res = ds.get("resolution")
    rows = [
        _row("Images", f"{_int(ds.get('images'))} at {_plain(res)} x {_plain(res)} px, grayscale"),
        _row("Creators", "; ".join(str(c) for c in creators) if creators else "unknown (not declared)"),
    ]
    if isinstance(licences, dict) and licences:
        for text, count in sorted(licences.items()):
            rows.append(_row("Licence", f"{text} — {_int(count)} image{'s' if count != 1 else ''}"))
    else:
        rows.append(_row("Licence", "unknown (not declared)"))
    rows.append(_row("Dataset folder", Code(_plain(ds.get("path")))))
    rows.append(_row("Manifest sha256", Code(_plain(ds.get("manifest_sha256")))))
    if ds.get("skipped"):
        rows.append(_row("Files skipped", _int(ds.get("skipped"))))
    lead = _para(
        "Every training image is declared in the dataset's provenance manifest (provenance.json); "
        "its hash below identifies the exact list."
    )
    return Section("Dataset and credits", (lead, Table(tuple(rows))))


def _energy_rows(energy: Mapping[str, Any]) -> list[tuple[str, tuple[Inline, ...]]]:
    """Energy total and how it was obtained; an estimate is called an estimate, every time."""
    if not energy:
        return [_row("Energy", "not recorded")]
    kind = str(energy.get("kind", "estimate"))
    label = {
        "measured": "measured",
        "estimate": "estimate — not a measurement",
    }.get(kind, f"{kind} — see the parts below")
    total = energy.get("joules")
    if isinstance(energy.get("kwh"), (int, float)) and isinstance(total, (int, float)):
        text = f"{energy['kwh']:.4g} kWh ({total:,.0f} J)"
    else:
        text = _joules(total)
    rows = [_row("Energy", f"{text}, {label}")]
    if kind not in ("measured", "estimate"):
        for part in ("measured", "estimated"):
            joules, seconds = energy.get(f"{part}_joules"), energy.get(f"{part}_seconds")
            rows.append(_row(f"Energy, {part} part", f"{_joules(joules)} over {_seconds(seconds)}"))
    for source in energy.get("sources") or []:
        rows.append(_row("Energy source", str(source)))
    return rows


def _reproduce_commands(card: Mapping[str, Any]) -> list[str]:
    """The card's reproduce commands, in order (``reproduce``: a list of commands, or one command)."""
    value = card.get("reproduce")
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.strip()]
    return []


def _training_section(card: Mapping[str, Any], config: Mapping[str, Any]) -> Section:
    tr = card["training"]
    hw = card.get("hardware") or {}
    settings = tr.get("settings") if isinstance(tr.get("settings"), dict) else config.get("train", {})
    requested = settings.get("steps") if isinstance(settings, dict) else None
    sessions = [s for s in tr.get("sessions") or [] if isinstance(s, dict)]
    rows = [
        _row("Steps", f"{_int(tr.get('steps'))}" + (f" of {_int(requested)} requested" if requested else "")),
        _row("Batch size", _int(settings.get("batch_size") if isinstance(settings, dict) else None)),
        _row("Images seen", f"{_int(tr.get('images_seen'))} ({_plain(tr.get('epochs'))} epochs)"),
        _row("Wall time", f"{_seconds(tr.get('wall_time_s'))} over {len(sessions)} session(s)"),
        _row("Throughput", f"{_plain(tr.get('images_per_second'))} images/s (training steps only)"),
        _row("Final loss", _plain(tr.get("final_loss"))),
        _row(
            "Hardware",
            f"{_plain(hw.get('device'))} ({_plain(hw.get('device_name'))}), {_int(hw.get('world_size', 1))} process(es), "
            f"{_int(hw.get('torch_threads'))} torch thread(s); torch {_plain(hw.get('torch'))}, Python {_plain(hw.get('python'))}",
        ),
    ]
    rows += _energy_rows(card.get("energy") or {})
    if isinstance(settings, dict) and settings:
        rows.append(_row("Settings", _config_text(settings)))
    blocks: list[Block] = [Table(tuple(rows))]
    if sessions:
        blocks.append(_sessions_table(sessions))
    commands = _reproduce_commands(card)
    if commands:
        blocks.append(_para("To reproduce, run in order:"))
        blocks += [_para(Code(c)) for c in commands]
    return Section("Training", tuple(blocks))


def _sessions_table(sessions: Sequence[Mapping[str, Any]]) -> Table:
    """One row per training session: when, which steps, how long, on what, energy and its kind."""
    rows = []
    for k, s in enumerate(sessions, start=1):
        e = s.get("energy") if isinstance(s.get("energy"), dict) else {}
        kind = e.get("kind", "unknown")
        rows.append(
            _row(
                f"Session {k}",
                f"started {_plain(s.get('started_utc'))}, steps {_int(s.get('from_step'))} → {_int(s.get('to_step'))}, "
                f"{_seconds(s.get('wall_time_s'))}, {_plain(s.get('device'))} ({_plain(s.get('device_name'))}), "
                f"{_int(s.get('world_size', 1))} process(es); energy {_joules(e.get('joules'))} ({kind})",
            )
        )
    return Table(tuple(rows))


def _loss_section(run: Path, prediction: Any) -> Section:
    path = run / LOSS_FILE
    if not path.is_file():
        return Section("Loss curve", (_para(f"No loss history yet ({path} is missing).", tone="note"),))
    png = loss_curve_png(path)
    figure = Figure(
        png,
        *_png_facts(png, path),
        caption=f"Training loss (mean squared error of the model's {_plain(prediction)}-prediction); grey: the mean "
        "over each logging interval, dark: its moving average. Log scale.",
        alt="training loss against training step, log scale",
        name="loss_curve.png",
    )
    return Section("Loss curve", (figure,))


def _samples_section(run: Path) -> Section:
    sheets = list_sheets(run)
    if not sheets:
        return Section(
            "Samples over time",
            (_para(f"No sample sheets in {run / SAMPLES_DIR} (training writes one every sample_every steps).", tone="note"),),
        )
    shown = select_sheets(sheets)
    figures = tuple(
        _read_png(path, f"step {step:,}", f"samples of the model at training step {step}", f"samples_step_{step:07d}.png")
        for step, path in shown
    )
    what = (
        f"{len(sheets)} sheets" if len(shown) == len(sheets) else f"{len(shown)} of {len(sheets)} sheets, spread evenly"
    )
    lead = _para(f"Samples of the averaged (EMA) weights with fixed seeds, as training went on ({what}).")
    return Section("Samples over time", (lead, FigureGrid(figures)))


def _weights_warning(recorded: Any, current: str | None, what: str) -> Paragraph | None:
    if not isinstance(recorded, str) or not current or recorded == current:
        return None
    return _para(
        f"These {what} were made with other weights (sha256 ", Code(recorded), ") than this run's current "
        f"{WEIGHTS_FILE} (sha256 ", Code(current), "): they describe another checkpoint, not the published model.",
        tone="warning",
    )


def _evaluation_section(
    run: Path, evaluation: Path | None, data: Mapping[str, Any] | None, weights_sha: str | None
) -> Section:
    title = "Likelihood (bits per dimension)"
    if data is None:
        command = f"entropic evaluate {_q(run)} --data HELDOUT --json {_q(run / EVALUATION_FILE)}"
        return Section(
            title,
            (_para("Not measured yet — run ", Code(command), " on a folder of held-out images.", tone="note"),),
        )
    where = data.get("data") if isinstance(data.get("data"), dict) else {}
    n = data["num_images"]
    on_training = bool(where.get("is_training_set"))
    images = f"{n:,} {'training' if on_training else 'held-out'} image{'s' if n != 1 else ''}"
    # The exact bound evaluates every timestep (the decoder term plus T-1 KL terms).
    estimated = data.get("estimated")
    if not isinstance(estimated, bool):
        estimated = data["timesteps_evaluated"] < data["timesteps"]
    how = (
        f"sum over timesteps estimated from {data['timesteps_evaluated']:,} of {data['timesteps']:,} (stratified, unbiased)"
        if estimated
        else f"all {data['timesteps']:,} timesteps"
    )
    rows = [
        _row("Variational bound", f"{data['bits_per_dim']:.4f} ± {data['stderr']:.4f} bits/dim (standard error over images)"),
        _row("Measured on", *((images + " from ", Code(str(where["folder"]))) if where.get("folder") else (images,))),
        _row("Timesteps", how),
        _row(
            "Terms",
            f"prior L_T {data['prior_bpd']:.5f} + sum of L_t {data['terms_bpd']:.4f} + decoder L_0 {data['decoder_bpd']:.4f} bits/dim",
        ),
    ]
    if where.get("manifest_sha256"):
        rows.append(_row("Their manifest sha256", Code(str(where["manifest_sha256"]))))
    blocks: list[Block] = [
        _para(
            "An upper bound on the model's negative log-likelihood of the images below, in bits per pixel "
            "(8 would be no better than uniform noise over 256 grey levels; lower is better)."
        ),
        Table(tuple(rows)),
    ]
    if on_training:
        blocks.append(
            _para("These are the run's training images: the number measures fit, not generalisation.", tone="warning")
        )
    if where.get("note") and not on_training:
        blocks.append(_para(str(where["note"]), tone="note"))
    warning = _weights_warning(where.get("weights_sha256"), weights_sha, "figures")
    if warning:
        blocks.append(warning)
    blocks.append(_para("Source: ", Code(str(evaluation))))
    return Section(title, tuple(blocks))


def _audit_section(
    run: Path, config: Mapping[str, Any], audit: Path | None, data: Mapping[str, Any] | None, weights_sha: str | None
) -> Section:
    title = "Memorisation audit"
    if data is None:
        dataset = (config.get("dataset") or {}).get("path") or "DATA"
        store = Path(f"{run}-samples")
        return Section(
            title,
            (
                _para(
                    "Not audited yet — record samples with ",
                    Code(f"entropic sample {_q(run)} --out {_q(store)} --count 64"),
                    " and compare them with the training images: ",
                    Code(f"entropic audit {_q(store)} --data {_q(dataset)} --out {_q(run / 'audit.png')}"),
                    f" (writes {run / AUDIT_FILE}).",
                    tone="note",
                ),
            ),
        )
    flagged = data["flagged"]
    entries = data["entries"]
    if flagged:
        shown = ", ".join(f"#{i}" for i in flagged[:20]) + (", ..." if len(flagged) > 20 else "")
        verdict = _para(
            f"{len(flagged)} of {data['num_samples']} samples flagged as possible near-copies of a training image: {shown}.",
            tone="alert",
        )
    else:
        verdict = _para(f"0 flagged: no near-copies among {data['num_samples']} samples.", tone="verdict")
    rows = [
        _row("Samples audited", _int(data["num_samples"])),
        _row("Training images", _int(data["num_training"])),
        _row("Flagged", _int(len(flagged))),
        _row(
            "Threshold rule",
            str(data.get("criterion") or f"flagged if d1 / mean(d to the {data['neighbourhood']} nearest) < {data['threshold']}"),
        ),
        _row("Distance", str(data.get("metric") or "pixel L2")),
    ]
    if entries:
        rel = [float(e["relative"]) for e in entries]
        d1 = [float(e["d1"]) for e in entries]
        rows.append(_row("Relative distance", f"min {min(rel):.3f}, median {statistics.median(rel):.3f}"))
        rows.append(_row("Nearest RMS distance", f"min {min(d1):.4f}, median {statistics.median(d1):.4f}"))
    if data.get("data"):
        rows.append(_row("Compared with", Code(str(data["data"]))))
    blocks: list[Block] = [
        _para(
            "Every sample is compared with every training image by pixel distance. A sample is flagged when its "
            "nearest training image is much closer than the others around it (Carlini et al. 2023)."
        ),
        verdict,
        Table(tuple(rows)),
    ]
    trained_on = (config.get("dataset") or {}).get("manifest_sha256")
    audited = data.get("data_manifest_sha256")
    if isinstance(audited, str) and trained_on and audited != trained_on:
        blocks.append(
            _para(
                "The audit compared the samples with another image set (manifest sha256 ", Code(audited),
                ") than the one this run was trained on (", Code(str(trained_on)), ").",
                tone="warning",
            )
        )
    warning = _weights_warning(data.get("store_weights_sha256"), weights_sha, "samples")
    if warning:
        blocks.append(warning)
    sheet = audit_sheet_path(audit, str(data.get("sheet") or "")) if audit is not None else None
    if sheet is not None:
        blocks.append(
            _read_png(
                sheet,
                "Each row: a sample | its nearest training image | the second nearest, most suspicious first.",
                "audit sheet: samples beside their nearest training images",
                "audit_sheet.png",
            )
        )
    else:
        blocks.append(_para(f"The audit sheet {data.get('sheet') or '(none recorded)'} was not found.", tone="note"))
    blocks.append(_para("Source: ", Code(str(audit))))
    return Section(title, tuple(blocks))


def _footer(run: Path, weights_sha: str | None) -> tuple[tuple[Inline, ...], ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("entropic")
    except PackageNotFoundError:
        ver = "unknown"
    return (
        (f"Made with entropic {ver} from the run directory ", Code(str(run)), "."),
        (f"{CONFIG_FILE} sha256 ", Code(sha256_file(run / CONFIG_FILE))),
        (f"{WEIGHTS_FILE} sha256 ", Code(weights_sha) if weights_sha else "(no weights yet)"),
    )


def _default_input(run: Path, given: str | os.PathLike | None, name: str) -> Path | None:
    if given is not None:
        return Path(given)
    default = run / name
    return default if default.is_file() else None


def build_report(
    run: str | os.PathLike,
    *,
    evaluation: str | os.PathLike | None = None,
    audit: str | os.PathLike | None = None,
) -> Report:
    """Read a run directory (and its evaluation and audit JSON, if any) into a :class:`Report`.

    ``evaluation`` / ``audit`` default to RUN/evaluation.json and RUN/audit.json when those
    exist; a part that was not run becomes a line with the command that would run it. A path
    given explicitly must exist. Raises EntropicError (one line, naming the file and key) for
    a missing run, a folder that is not a run, an unreadable card or a malformed input.
    """
    run = Path(run)
    config = read_run_config(run)
    card = read_card(run)
    eval_path = _default_input(run, evaluation, EVALUATION_FILE)
    audit_path = _default_input(run, audit, AUDIT_FILE)
    eval_data = read_evaluation(eval_path) if eval_path is not None else None
    audit_data = read_audit(audit_path) if audit_path is not None else None
    weights = run / WEIGHTS_FILE
    weights_sha = sha256_file(weights) if weights.is_file() else None
    name = run.resolve().name
    return Report(
        title=f"Process report: {name}",
        lead=f"How the diffusion model of the run “{name}” was made: on what, how, at what cost, and what it learned.",
        sections=(
            _summary_section(card, config),
            _dataset_section(card),
            _training_section(card, config),
            _loss_section(run, card["model"].get("prediction", config.get("prediction"))),
            _samples_section(run),
            _evaluation_section(run, eval_path, eval_data, weights_sha),
            _audit_section(run, config, audit_path, audit_data, weights_sha),
        ),
        footer=_footer(run, weights_sha),
    )


# ----------------------------------------------------------------------------- HTML

CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #fbfbf9; color: #1d1d1b;
  font: 16px/1.55 "Iowan Old Style", "Palatino Linotype", Palatino, Georgia, serif; }
main { max-width: 46rem; margin: 0 auto; padding: 2.5rem 1.25rem 3rem; }
h1 { font-size: 1.9rem; line-height: 1.2; margin: 0 0 .4rem; font-weight: 600; }
h2 { font-size: 1.2rem; margin: 2.4rem 0 .6rem; padding-bottom: .2rem; border-bottom: 1px solid #d8d8d2; font-weight: 600; }
p { margin: .6rem 0; }
.lead { color: #4a4a46; font-size: 1.05rem; }
code { font: .82em/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; overflow-wrap: anywhere;
  background: #efefea; padding: .05em .3em; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0 1rem; font-size: .92rem; }
th, td { text-align: left; vertical-align: top; padding: .32rem .6rem .32rem 0; border-bottom: 1px solid #e4e4df; }
th { font-weight: 600; white-space: nowrap; width: 11rem; color: #3a3a37; }
.note { color: #4a4a46; border-left: 3px solid #b9b9b2; padding: .1rem 0 .1rem .8rem; }
.warning { border-left: 3px solid #8a5a00; padding: .1rem 0 .1rem .8rem; background: #f6efe1; }
.verdict { font-size: 1.15rem; font-weight: 600; }
figure { margin: 1rem 0; break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; background: #fff; }
figcaption { font-size: .85rem; color: #55554f; margin-top: .3rem; }
.sheets { display: grid; grid-template-columns: repeat(auto-fill, minmax(13.5rem, 1fr)); gap: .8rem 1rem; }
.sheets figure { margin: 0; }
footer { margin-top: 3rem; padding-top: .8rem; border-top: 1px solid #d8d8d2; font-size: .8rem; color: #55554f; }
footer p { margin: .2rem 0; }
@media print {
  body { background: #fff; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  code { background: none; padding: 0; }
  .warning { background: none; }
}
@page { margin: 18mm 16mm; }
""".strip()


def _html_inline(parts: Sequence[Inline]) -> str:
    return "".join(
        f"<code>{html.escape(p.text)}</code>" if isinstance(p, Code) else html.escape(p) for p in parts
    )


def _html_figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{fig.width}" height="{fig.height}" '
        f'alt="{html.escape(fig.alt)}"><figcaption>{html.escape(fig.caption)}</figcaption></figure>'
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        classes = {"alert": "verdict warning"}.get(block.tone, block.tone)
        cls = f' class="{classes}"' if classes else ""
        return f"<p{cls}>{_html_inline(block.parts)}</p>"
    if isinstance(block, Table):
        rows = "\n".join(
            f"<tr><th scope=\"row\">{html.escape(label)}</th><td>{_html_inline(value)}</td></tr>" for label, value in block.rows
        )
        return f"<table>\n{rows}\n</table>"
    if isinstance(block, Figure):
        return _html_figure(block)
    if isinstance(block, FigureGrid):
        return '<div class="sheets">\n' + "\n".join(_html_figure(f) for f in block.figures) + "\n</div>"
    raise TypeError(f"unknown block {type(block).__name__}")


def build_report_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, base64 images, no script)."""
    body = [f"<h1>{html.escape(report.title)}</h1>", f'<p class="lead">{html.escape(report.lead)}</p>']
    for section in report.sections:
        body.append(f"<section>\n<h2>{html.escape(section.title)}</h2>")
        body.extend(_html_block(b) for b in section.blocks)
        body.append("</section>")
    footer = "\n".join(f"<p>{_html_inline(line)}</p>" for line in report.footer)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(report.title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + f"\n<footer>\n{footer}\n</footer>\n</main>\n</body>\n</html>\n"
    )


# ----------------------------------------------------------------------------- Markdown


def _md_text(text: str) -> str:
    # The characters Markdown reads get a backslash; then <, > and & become HTML entities
    # (Markdown passes entities through), so no text from a file turns into markup.
    return html.escape(re.sub(r"([\\`*_\[\]|#])", r"\\\1", text), quote=False)


def _md_code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text.replace('|', '&#124;')}{pad}{fence}"


def _md_inline(parts: Sequence[Inline]) -> str:
    return "".join(_md_code(p.text) if isinstance(p, Code) else _md_text(p) for p in parts)


def _md_figure(fig: Figure, folder: str) -> str:
    return f"![{_md_text(fig.alt)}]({folder}/{fig.name})\n\n*{_md_text(fig.caption)}*"


def _md_block(block: Block, folder: str) -> str:
    if isinstance(block, Paragraph):
        prefix = {"note": "> ", "warning": "> **Note:** ", "verdict": "**", "alert": "> **"}.get(block.tone, "")
        suffix = "**" if block.tone in ("verdict", "alert") else ""
        return f"{prefix}{_md_inline(block.parts)}{suffix}"
    if isinstance(block, Table):
        lines = ["| | |", "| --- | --- |"]
        lines += [f"| {_md_text(label.strip())} | {_md_inline(value)} |" for label, value in block.rows]
        return "\n".join(lines)
    if isinstance(block, Figure):
        return _md_figure(block, folder)
    if isinstance(block, FigureGrid):
        return "\n\n".join(_md_figure(f, folder) for f in block.figures)
    raise TypeError(f"unknown block {type(block).__name__}")


def build_report_markdown(report: Report, folder: str) -> tuple[str, dict[str, bytes]]:
    """The report as Markdown whose images live in ``folder`` (relative): (text, {name: PNG bytes})."""
    out = [f"# {_md_text(report.title)}", "", _md_text(report.lead)]
    for section in report.sections:
        out += ["", f"## {_md_text(section.title)}"]
        for block in section.blocks:
            out += ["", _md_block(block, folder)]
    out += ["", "---", ""]
    out += [_md_inline(line) + "  " for line in report.footer]
    files = {fig.name: fig.png for fig in report.figures}
    return "\n".join(out).rstrip() + "\n", files


# ----------------------------------------------------------------------------- writing


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise EntropicError(f"{path}: is a folder; give a file name for the report")
    if path.exists() and not overwrite:
        raise EntropicError(f"{path}: already exists; pass --overwrite to replace it")


def _replace_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into ``folder`` as a whole: built under a temporary name, then swapped in."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        fsync_dir(folder.parent)
    finally:
        for stale in (tmp, old):
            if stale.exists():
                shutil.rmtree(stale)


def write_report(
    run: str | os.PathLike,
    output: str | os.PathLike,
    *,
    evaluation: str | os.PathLike | None = None,
    audit: str | os.PathLike | None = None,
    format: str = "html",
    overwrite: bool = False,
) -> Path:
    """Build the report of ``run`` and write it to ``output``; return the path written.

    format "html": one self-contained file. format "md": ``output`` plus the folder
    ``<output stem>_files/`` of PNGs beside it. Written atomically; an existing output (or
    image folder) is refused unless ``overwrite``. Everything is read and checked before
    anything is written, so a refused input leaves the disk as it was.
    """
    if format not in ("html", "md"):
        raise EntropicError(f"--format must be html or md, got {format!r}")
    output = Path(output)
    _refuse_existing(output, overwrite)
    folder = output.with_name(f"{output.stem}_files")
    if format == "md":
        if folder.exists() and not folder.is_dir():
            raise EntropicError(f"{folder}: is a file; the Markdown report needs that name for its images")
        if folder.exists() and not overwrite:
            raise EntropicError(f"{folder}: already exists; pass --overwrite to replace it")
    report = build_report(run, evaluation=evaluation, audit=audit)
    output.parent.mkdir(parents=True, exist_ok=True)
    if format == "html":
        atomic_write_text(output, build_report_html(report))
        return output
    text, files = build_report_markdown(report, folder.name)
    _replace_folder(folder, files)
    atomic_write_bytes(output, text.encode("utf-8"))
    return output
