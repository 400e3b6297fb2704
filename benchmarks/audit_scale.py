"""The memorisation audit at scale: 1,000 drawings of the default model against its training glyphs.

    .venv/bin/python benchmarks/audit_scale.py                     # the full run: writes assets/model/audit.*
    .venv/bin/python benchmarks/audit_scale.py --count 16 --steps 5 --work /tmp/a --out /tmp/a/audit.png \\
        --json /tmp/a/audit_scale.json                             # a smoke run, nothing shipped touched

1. Samples ``--count`` drawings (default 1,000) from the default model (``--run``, default
   assets/model) with the default piece's own recipe (assets/model/sampling.json: DDIM 50
   steps, seed 7, no label) through ``entropic sample``'s recorder (``diffusion.record``).
   Sample i depends only on the weights, the recipe and i, so the first 144 are the default
   piece's drawings. The store is kept in ``--work`` (default scratch/audit_scale): an
   interrupted run resumes.
2. Draws the default dataset (``entropic dataset default``: the training glyphs and the held-out
   ones) into ``--work`` unless ``--data`` and ``--heldout`` name them.
3. Runs the audit (``diffusion.evidence.audit.audit_store``, what ``entropic audit --run --heldout``
   runs): Carlini et al.'s relative L2 criterion, the second similarity (SSIM and the perceptual
   hash over every training glyph), the held-out glyphs audited alike as a baseline, and the
   membership gap of the model between training and held-out glyphs. It writes the sheet, the
   distance histogram and audit.json beside ``--out`` (default assets/model/audit.png, so
   assets/model/audit.json and assets/model/audit-histogram.png), at most ``--max-rows`` rows.
4. Writes the conditions, the timings and the figures to ``--json`` (default
   benchmarks/results/audit_scale.json).

After a full run: ``entropic report assets/model -o assets/model/report.html`` shows it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from diffusion.data.hershey_glyphs import GlyphStyle, write_default_dataset  # noqa: E402
from diffusion.evidence.audit import audit_store  # noqa: E402
from diffusion.record import RecordSettings, record_run  # noqa: E402
from render.cli.default_piece import MODEL_DIR, sampling_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def default_glyphs(work: Path) -> tuple[Path, Path]:
    """The default dataset's training and held-out folders in ``work``, drawn once."""
    train, held = work / "hershey-train", work / "hershey-heldout"
    if not (train / "provenance.json").is_file() or not (held / "provenance.json").is_file():
        write_default_dataset(train, GlyphStyle(), overwrite=True, held_out=held)
    return train, held


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=MODEL_DIR, help="the model (default: assets/model)")
    p.add_argument("--count", type=int, default=1000, help="drawings to sample and audit")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the recipe's)")
    p.add_argument("--data", type=Path, default=None, help="training glyphs (default: drawn into --work)")
    p.add_argument("--heldout", type=Path, default=None, help="held-out glyphs (default: drawn into --work)")
    p.add_argument("--work", type=Path, default=ROOT / "scratch" / "audit_scale")
    p.add_argument("--out", type=Path, default=MODEL_DIR / "audit.png", help="the sheet; audit.json beside it")
    p.add_argument("--max-rows", type=int, default=24)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "audit_scale.json")
    args = p.parse_args()
    if (args.data is None) != (args.heldout is None):
        p.error("give both --data and --heldout, or neither (then the default dataset is drawn into --work)")

    args.work.mkdir(parents=True, exist_ok=True)
    data, heldout = (args.data, args.heldout) if args.data is not None else default_glyphs(args.work)
    recipe = sampling_recipe("default")
    recipe["count"] = args.count
    if args.steps is not None:
        recipe["steps"] = args.steps
    settings = RecordSettings(**recipe)
    store = args.work / f"default-{args.count}-{settings.sampler}{settings.steps}"
    load = os.getloadavg()

    start = time.perf_counter()
    recorded = record_run(args.run, store, settings, progress=True)
    sampling_s = time.perf_counter() - start
    start = time.perf_counter()
    report = audit_store(store, data, out=args.out, max_rows=args.max_rows, run=args.run, heldout=heldout)
    audit_s = time.perf_counter() - start
    print(report.summary(), flush=True)

    relative = sorted(e["relative"] for e in report.entries)
    second = report.second_similarity
    membership = report.membership
    result = {
        "conditions": {
            "run": str(args.run),
            "samples": report.num_samples,
            "recipe": {k: v for k, v in dataclasses.asdict(settings).items() if v is not None},
            "training_images": report.num_training,
            "heldout_images": report.heldout_baseline.get("num_images"),
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": [round(v, 2) for v in load],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "seconds": {
            "sampling": round(sampling_s, 1),
            "sampled_now": len(recorded.recorded),  # the rest were in the store already (a resumed run)
            "already_complete": recorded.already_complete,
            "audit": round(audit_s, 1),
            "membership": round(membership.get("seconds", 0.0), 1),
        },
        "l2_relative": {
            "threshold": report.threshold,
            "neighbourhood": report.neighbourhood,
            "flagged": report.flagged,
            "min": round(relative[0], 4),
            "median": round(relative[len(relative) // 2], 4),
        },
        "second_similarity": {k: v for k, v in second.items() if k != "metrics"},
        "heldout_baseline": report.heldout_baseline,
        "membership": {k: membership.get(k) for k in (
            "num_pairs", "timesteps", "train_loss", "heldout_loss", "gap", "gap_stderr", "gap_interval", "ratio",
            "ratio_interval", "objective", "objective_train", "objective_heldout", "per_timestep")},
        "files": {"audit": report.report, "sheet": report.sheet, "histogram": report.histogram},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}", flush=True)


if __name__ == "__main__":
    main()
