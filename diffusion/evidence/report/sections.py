"""Building the report's sections from its inputs (:func:`build_report`), with their formatting helpers.

The page is published beside the model, so it locates nothing on the machine that made it
(:mod:`diffusion.common.paths`): the run is named by its folder's name, the files in it
relative to it, anything else by its name; paths that older inputs recorded absolutely are
reduced the same way. The commands it suggests are written for the folder that holds the run.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from diffusion.common.atomic import sha256_file
from diffusion.common.errors import EntropicError
from diffusion.common.paths import published_path, republished_path
from diffusion.figures.loss_curve import loss_curve_png
from diffusion.runs.layout import (
    CONFIG_FILE,
    LABEL_SHEET,
    LOSS_FILE,
    SAMPLES_DIR,
    WEIGHTS_FILE,
    dataset_folder,
    published_dataset,
)

from .cost import RenderedVideo, cost_section, read_store
from .document import Block, Code, Figure, FigureGrid, Inline, Paragraph, Report, Section, Table
from .inputs import (
    AUDIT_FILE,
    EVALUATION_FILE,
    _png_facts,
    audit_sheet_path,
    list_sheets,
    read_audit,
    read_card,
    read_evaluation,
    read_run_config,
    select_sheets,
)

FROM_SCRATCH = "trained from scratch (random initialisation, no pretrained weights)"


def _row(label: str, *parts: Inline) -> tuple[str, tuple[Inline, ...]]:
    return (label, tuple(parts))


def _para(*parts: Inline, tone: str = "") -> Paragraph:
    return Paragraph(tuple(parts), tone)


def _read_png(path: Path, caption: str, alt: str, name: str) -> Figure:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EntropicError(f"{path}: unreadable ({err.strerror or err})") from None
    width, height = _png_facts(data, path)
    return Figure(data, width, height, caption, alt, name)


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


def _recorded(value: Any, root: Path | None) -> str:
    """A path an input recorded (relative to ``root``, its file's folder), shown without a machine's folders."""
    return republished_path(value, root) if isinstance(value, str) else _plain(value)


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


def _dataset_section(card: Mapping[str, Any], run: Path) -> Section:
    ds = published_dataset(card["dataset"], run)
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
    counts = ds.get("label_counts")
    if isinstance(counts, dict) and counts:
        listed = ", ".join(f"{name} ({_int(n)})" for name, n in sorted(counts.items()))
        rows.append(_row("Labels", f"{len(counts)} classes the model is steered by: {listed}"))
    rows.append(_row("Dataset folder", Code(_plain(ds.get("path")))))
    rows.append(_row("Manifest sha256", Code(_plain(ds.get("manifest_sha256")))))
    if ds.get("skipped"):
        rows.append(_row("Files skipped", _int(ds.get("skipped"))))
    lead = _para(
        "Every training image is declared in the dataset's provenance manifest (provenance.json); "
        "its hash below identifies the exact list."
    )
    return Section("Dataset and credits", (lead, Table(tuple(rows))))


def _datasheet_blocks(folder: Path, shown: str) -> list[Block]:
    """The datasheet of the dataset folder at hand, one table per section of Gebru et al.'s."""
    from diffusion.data.datasheet import PROMPT, build_datasheet, read_image_facts
    from diffusion.data.datasheet_answers import ANSWERS_NAME, read_answers
    from diffusion.data.manifest import read_manifest

    manifest = read_manifest(folder)
    blocks: list[Block] = []
    try:
        answers = read_answers(folder)
    except EntropicError:  # its message locates the folder on this machine: named here by its name only
        answers = {}
        blocks.append(_para(
            f"The author's answers are left out: {shown}/{ANSWERS_NAME} could not be read (",
            Code(f"entropic dataset datasheet {_q(shown)}"), " says why).", tone="warning",
        ))
    sheet = build_datasheet(manifest, read_image_facts(manifest), answers, name=shown)
    waiting = len(sheet.open_keys)
    blocks.insert(0, _para(
        "After Gebru et al., “Datasheets for Datasets” (2018), from the dataset folder ", Code(shown),
        " (its manifest is the one recorded above): what the manifest and the image files say is filled in; "
        f"{waiting} of {len(sheet.entries)} questions await the dataset's author. The same datasheet is ",
        Code(f"{shown}/DATASHEET.md"), " (", Code(f"entropic dataset datasheet {_q(shown)}"), ").",
    ))
    for number, part in enumerate(sheet.parts, start=1):
        rows = []
        for entry in part.entries:
            given = " ".join(" ".join(t.split()) for t in (entry.facts, entry.answer) if t is not None)
            # `commands` in the datasheet's text are code here too.
            text: list[Inline] = [Code(p[1:-1]) if i % 2 else p for i, p in enumerate(re.split(r"(`[^`]+`)", given)) if p]
            if entry.is_open:
                text += [(" " if given else "") + f"({PROMPT}: ", Code(entry.key), ")"]
            rows.append(_row(entry.label, *text))
        blocks += [_para(f"{number}. {part.title}"), Table(tuple(rows))]
    return blocks


def _datasheet_section(card: Mapping[str, Any], run: Path) -> Section:
    title = "Datasheet"
    record = card["dataset"] if isinstance(card.get("dataset"), dict) else {}
    shown = _plain(published_dataset(record, run).get("path"))
    sha = record.get("manifest_sha256")
    folder = dataset_folder(record, run)
    if folder is not None:
        return Section(title, tuple(_datasheet_blocks(folder, shown)))
    if not isinstance(record.get("path"), str):  # a run that does not record its dataset folder
        return Section(title, (_para("The run does not record its dataset folder, so its datasheet is not shown.",
                                     tone="note"),))
    shipped = run / "DATASHEET.md"
    if shipped.is_file():
        try:
            matches = isinstance(sha, str) and sha in shipped.read_text(encoding="utf-8", errors="replace")
        except OSError:
            matches = False
        if matches:
            return Section(title, (_para(
                "The dataset's datasheet (after Gebru et al. 2018) is published in the run directory as ",
                Code("DATASHEET.md"), ", written from the manifest recorded above.",
            ),))
        return Section(title, (_para(
            Code("DATASHEET.md"), " in the run directory does not name the manifest recorded above: it describes "
            "another version of the dataset, or another dataset.", tone="warning",
        ),))
    return Section(title, (_para(
        f"The dataset folder {shown} is not at hand beside the run, so its datasheet (after Gebru et al. 2018) is not "
        "shown. It lives beside the manifest (sha256 ", Code(_plain(sha)), ") as ", Code(f"{shown}/DATASHEET.md"),
        ", written by ", Code(f"entropic dataset datasheet {_q(shown)}"), ".", tone="note",
    ),))


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
        return Section("Loss curve", (_para(f"No loss history yet ({LOSS_FILE} is missing).", tone="note"),))
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
            (_para(f"No sample sheets in {SAMPLES_DIR}/ (training writes one every sample_every steps).", tone="note"),),
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
    blocks: list[Block] = [lead, FigureGrid(figures)]
    per_label = run / SAMPLES_DIR / LABEL_SHEET
    if per_label.is_file():
        blocks += [
            _para("Steered by each label (classifier-free guidance), one row per label, from ", Code(f"{SAMPLES_DIR}/{LABEL_SHEET}"),
                  " (written by ", Code("entropic sample --sheet"), "):"),
            FigureGrid((_read_png(per_label, "one row per label", "drawings of the model steered by each of its labels",
                                  LABEL_SHEET),)),
        ]
    return Section("Samples over time", tuple(blocks))


def _weights_warning(recorded: Any, current: str | None, what: str) -> Paragraph | None:
    if not isinstance(recorded, str) or not current or recorded == current:
        return None
    return _para(
        f"These {what} were made with other weights (sha256 ", Code(recorded), ") than this run's current "
        f"{WEIGHTS_FILE} (sha256 ", Code(current), "): they describe another checkpoint, not the published model.",
        tone="warning",
    )


def _evaluation_section(
    run: Path, name: str, evaluation: Path | None, data: Mapping[str, Any] | None, weights_sha: str | None
) -> Section:
    title = "Likelihood (bits per dimension)"
    if data is None:
        command = f"entropic evaluate {_q(name)} --data HELDOUT --json {_q(f'{name}/{EVALUATION_FILE}')}"
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
        _row(
            "Measured on",
            *((images + " from ", Code(_recorded(where["folder"], evaluation.parent))) if where.get("folder") else (images,)),
        ),
        _row("Timesteps", how),
        _row(
            "Terms",
            f"prior L_T {data['prior_bpd']:.5f} + sum of L_t {data['terms_bpd']:.4f} + decoder L_0 {data['decoder_bpd']:.4f} bits/dim",
        ),
    ]
    per_label = data.get("per_label")
    if isinstance(per_label, dict):
        for label, row in sorted(per_label.items()):
            rows.append(_row(
                f"Given label {label}",
                f"{row['bits_per_dim']:.4f} ± {row['stderr']:.4f} bits/dim ({_int(row['images'])} images)",
            ))
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
    blocks.append(_para("Source: ", Code(published_path(evaluation, run))))
    return Section(title, tuple(blocks))


def _number(value: Any) -> float | None:
    """A finite number an input recorded, else None (the row is left out)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _second_similarity_verdict(second: Mapping[str, Any], samples: Any) -> Paragraph:
    flagged = second["flagged"]
    if not flagged:
        return _para("0 flagged by the second similarity (SSIM over every training image) either.", tone="verdict")
    shown = ", ".join(f"#{i}" for i in flagged[:20]) + (", ..." if len(flagged) > 20 else "")
    return _para(
        f"{len(flagged)} of {samples} samples flagged by the second similarity "
        f"({second.get('criterion') or 'SSIM'}): {shown}.",
        tone="alert",
    )


def _audit_later_rows(data: Mapping[str, Any], second: Mapping[str, Any]) -> list[tuple[str, tuple[Inline, ...]]]:
    """Rows of the audit's later measures: the second similarity, the held-out baseline, the membership gap.

    Each is shown only when the audit recorded it (older audits did not) and its figures are numbers.
    """
    rows = []
    ssim_max, ssim_median = _number(second.get("ssim_max")), _number(second.get("ssim_median"))
    if isinstance(second.get("flagged"), list) and ssim_max is not None and ssim_median is not None:
        rows.append(_row(
            "Second similarity",
            f"SSIM with every training image: highest {ssim_max:.3f}, median {ssim_median:.3f}; "
            f"{_plain(second.get('criterion'))}",
        ))  # fmt: skip
        hash_min, hash_median = _number(second.get("hash_distance_min")), _number(second.get("hash_distance_median"))
        if hash_min is not None and hash_median is not None:
            rows.append(_row("Perceptual hash", f"nearest at {hash_min:g} of 64 bits, median {hash_median:g} (not a flag)"))
    elif isinstance(second.get("skipped"), str):
        rows.append(_row("Second similarity", f"not computed: {second['skipped']}"))
    base = data.get("heldout_baseline") if isinstance(data.get("heldout_baseline"), dict) else {}
    if isinstance(base.get("num_images"), int) and isinstance(base.get("flagged"), int):
        by_ssim = f", {base['ssim_flagged']} by SSIM" if isinstance(base.get("ssim_flagged"), int) else ""
        median = _number(base.get("relative_median"))
        rows.append(_row(
            "Held-out baseline",
            f"{_int(base['num_images'])} images never trained on, audited alike: {base['flagged']} flagged by pixel "
            f"distance{by_ssim}" + (f"; relative distance median {median:.3f}" if median is not None else ""),
        ))  # fmt: skip
    membership = data.get("membership") if isinstance(data.get("membership"), dict) else {}
    train, held, ratio = (_number(membership.get(k)) for k in ("train_loss", "heldout_loss", "ratio"))
    interval = membership.get("ratio_interval")
    if train is not None and held is not None and ratio is not None:
        ci = ""
        if isinstance(interval, list) and len(interval) == 2 and all(_number(v) is not None for v in interval):
            ci = f" (95% {interval[0]:.3f} to {interval[1]:.3f})"
        grid = membership.get("timesteps")
        rows.append(_row(
            "Membership gap",
            f"denoising loss (eps-MSE) {held:.5f} on {_int(membership.get('num_pairs'))} held-out images vs "
            f"{train:.5f} on as many training images, same {len(grid) if isinstance(grid, list) else 'fixed'} "
            f"timesteps and noise: ratio {ratio:.3f}{ci}; a memorising model's would be well above 1",
        ))  # fmt: skip
    return rows


def _audit_section(
    run: Path,
    name: str,
    config: Mapping[str, Any],
    audit: Path | None,
    data: Mapping[str, Any] | None,
    weights_sha: str | None,
) -> Section:
    title = "Memorisation audit"
    if data is None:
        dataset = (published_dataset(config.get("dataset") or {}, run)).get("path") or "DATA"
        store = f"{name}-samples"
        return Section(
            title,
            (
                _para(
                    "Not audited yet — record samples with ",
                    Code(f"entropic sample {_q(name)} --out {_q(store)} --count 64"),
                    " and compare them with the training images: ",
                    Code(f"entropic audit {_q(store)} --data {_q(dataset)} --out {_q(f'{name}/audit.png')}"),
                    f" (writes {name}/{AUDIT_FILE}).",
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
        rows.append(_row("Compared with", Code(_recorded(data["data"], audit.parent))))
    second = data.get("second_similarity") if isinstance(data.get("second_similarity"), dict) else {}
    rows += _audit_later_rows(data, second)
    blocks: list[Block] = [
        _para(
            "Every sample is compared with every training image by pixel distance. A sample is flagged when its "
            "nearest training image is much closer than the others around it (Carlini et al. 2023)."
        ),
        verdict,
    ]
    if isinstance(second.get("flagged"), list):
        blocks.append(_second_similarity_verdict(second, data["num_samples"]))
    blocks.append(Table(tuple(rows)))
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
    membership = data.get("membership") if isinstance(data.get("membership"), dict) else {}
    measured_with = (membership.get("data") or {}).get("weights_sha256") if isinstance(membership.get("data"), dict) else None
    warning = _weights_warning(measured_with, weights_sha, "membership losses")
    if warning:
        blocks.append(warning)
    histogram = audit_sheet_path(audit, data["histogram"]) if audit is not None and isinstance(data.get("histogram"), str) else None
    if histogram is not None:
        blocks.append(
            _read_png(
                histogram,
                "Left: every sample's relative distance (nearest / mean of its neighbourhood), flagged left of the "
                "dashed line. Right: its highest SSIM with any training image, flagged right of it. The dark outline, "
                "where drawn: the same for held-out images the model never saw.",
                "histogram of the samples' relative distances and SSIMs, with the flag thresholds",
                "audit_histogram.png",
            )
        )
    elif isinstance(data.get("histogram"), str):
        blocks.append(_para(f"The audit histogram {_recorded(data['histogram'], audit.parent)} was not found.", tone="note"))
    sheet = audit_sheet_path(audit, str(data.get("sheet") or "")) if audit is not None else None
    if sheet is not None:
        columns = " | the most similar by SSIM" if isinstance(second.get("flagged"), list) else ""
        blocks.append(
            _read_png(
                sheet,
                f"Each row: a sample | its nearest training image | the second nearest{columns}, most suspicious first.",
                "audit sheet: samples beside their nearest training images",
                "audit_sheet.png",
            )
        )
    else:
        recorded = _recorded(data["sheet"], audit.parent) if data.get("sheet") else "(none recorded)"
        blocks.append(_para(f"The audit sheet {recorded} was not found.", tone="note"))
    blocks.append(_para("Source: ", Code(published_path(audit, run))))
    return Section(title, tuple(blocks))


def _footer(run: Path, name: str, weights_sha: str | None) -> tuple[tuple[Inline, ...], ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("entropic")
    except PackageNotFoundError:
        ver = "unknown"
    return (
        (f"Made with entropic {ver} from the run directory ", Code(name), "; files in it are named relative to it."),
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
    store: str | os.PathLike | None = None,
    video: RenderedVideo | None = None,
) -> Report:
    """Read a run directory (and its evaluation and audit JSON, if any) into a :class:`Report`.

    ``evaluation`` / ``audit`` default to RUN/evaluation.json and RUN/audit.json when those
    exist; a part that was not run becomes a line with the command that would run it. A path
    given explicitly must exist. ``store`` (a trajectory store) and ``video`` (read by the
    command line) add what sampling and rendering a piece cost to the run's training
    (:mod:`.cost`). Raises EntropicError (one line, naming the file and key) for a missing run,
    a folder that is not a run, an unreadable card or a malformed input.
    """
    run = Path(run)
    config = read_run_config(run)
    card = read_card(run)
    sampled = read_store(store) if store is not None else None
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
            _dataset_section(card, run),
            _datasheet_section(card, run),
            _training_section(card, config),
            cost_section(card, weights_sha, sampled, video),
            _loss_section(run, card["model"].get("prediction", config.get("prediction"))),
            _samples_section(run),
            _evaluation_section(run, name, eval_path, eval_data, weights_sha),
            _audit_section(run, name, config, audit_path, audit_data, weights_sha),
        ),
        footer=_footer(run, name, weights_sha),
    )
