"""Does the label steer? Nearest training image of every guided sample, and whose label it carries.

    .venv/bin/python benchmarks/label_steering.py --data data/hershey-train \
        --baseline UNCONDITIONAL_RUN --json benchmarks/results/label_steering.json \
        --sheet docs/images/label-steering.png

For each guidance scale (default 0, 1, 3, 5) the conditional model (``--run``, default the
shipped one) records ``--per-label`` samples of every label through ``entropic sample``'s own
recorder (DDIM, eta 0, seed 7). Each finished drawing's nearest training image is found by the
audit's pixel distance (``diffusion.evidence.audit``, no third-party network), and a sample
*hits* when that image carries the label it was asked for. Per label and overall:

* the hit rate at each guidance, against chance (the label's share of the training images);
* an unconditional model's rate (``--baseline``, e.g. the model before labels, sampled as many
  times without a label): how often its drawings land nearest to each label by themselves;
* the audit at each guidance: near-copies flagged by Carlini et al.'s relative criterion and
  the smallest relative distance -- guidance pushes towards the data, so towards copies.

The stores are kept in ``--work`` (default scratch/label_steering), so an interrupted run resumes.
The sheet shows, per label (rows), the first samples at each guidance side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion.data.dataset import load_dataset  # noqa: E402
from diffusion.evidence.audit import audit_samples  # noqa: E402
from diffusion.figures.contact_sheet import contact_sheet, to_uint8  # noqa: E402
from diffusion.record import RecordSettings, record_run  # noqa: E402
from diffusion.runs.load import load_run  # noqa: E402
from diffusion.store.reader import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def finished(store: Path) -> np.ndarray:
    with open_store(store) as s:
        return s.frames(np.arange(s.num_samples), np.full(s.num_samples, s.num_steps - 1))


def score(x0: np.ndarray, asked: list, dataset, names: list[str]) -> dict:
    """Hit rates per asked label, and the audit, of finished samples against the training images."""
    audit = audit_samples(x0, dataset.images, training_names=list(dataset.files))
    nearest = {e["sample"]: dataset.labels[e["nearest"]] for e in audit.entries}
    per_label = {}
    for name in names:
        rows = [i for i, a in enumerate(asked) if a == name]
        per_label[name] = round(float(np.mean([nearest[i] == name for i in rows])), 4) if rows else None
    landed = {name: round(float(np.mean([nearest[i] == name for i in nearest])), 4) for name in names}
    overall = [nearest[i] == a for i, a in enumerate(asked) if a is not None]
    relative = [e["relative"] for e in audit.entries]
    return {
        "hit_rate": per_label,
        "overall": round(float(np.mean(overall)), 4) if overall else None,
        "nearest_label_share": landed,
        "audit": {"flagged": len(audit.flagged),
                  "flagged_samples": [{"sample": e["sample"], "asked": asked[e["sample"]], "nearest": e["nearest_file"],
                                       "relative": round(e["relative"], 4)} for e in audit.entries if e["flagged"]],
                  "min_relative": round(min(relative), 4),
                  "median_relative": round(float(np.median(relative)), 4),
                  "median_d1": round(float(np.median([e["d1"] for e in audit.entries])), 4)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=ROOT / "assets" / "model")
    p.add_argument("--data", type=Path, required=True, help="the run's (labelled) training folder")
    p.add_argument("--baseline", type=Path, default=None, help="an unconditional run to compare with")
    p.add_argument("--per-label", type=int, default=24)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", default="0,1,3,5")
    p.add_argument("--work", type=Path, default=ROOT / "scratch" / "label_steering")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--sheet", type=Path, default=None)
    p.add_argument("--sheet-per-cell", type=int, default=4)
    args = p.parse_args()

    config = load_run(args.run).unet_config
    names = list(config.labels)
    dataset = load_dataset(args.data, config.resolution)
    counts = dataset.label_counts
    chance = {name: round(counts.get(name, 0) / len(dataset), 4) for name in names}
    mix = tuple((name, args.per_label) for name in names)
    base = {"sampler": "ddim", "steps": args.steps, "eta": 0.0, "seed": 7, "count": len(names) * args.per_label}
    result: dict = {"run": str(args.run), "labels": names, "per_label": args.per_label, "ddim_steps": args.steps,
                    "chance": chance, "guidance": {}}
    # Sample i is asked for the label of its block of the mix (at guidance 0 the label is not used:
    # the store records no label, and the rate is what the model draws unsteered).
    asked = [name for name, n in mix for _ in range(n)]
    shown: dict[float, np.ndarray] = {}
    for g in [float(v) for v in args.guidance.split(",")]:
        store = args.work / f"guidance-{g:g}"
        record_run(args.run, store, RecordSettings(**base, label_mix=mix, guidance=g), progress=True)
        shown[g] = finished(store)
        result["guidance"][f"{g:g}"] = score(shown[g], asked, dataset, names)
        print(f"guidance {g:g}: {result['guidance'][f'{g:g}']}", flush=True)
    if args.baseline is not None:
        store = args.work / "unconditional"
        record_run(args.baseline, store, RecordSettings(**base), progress=True)
        result["unconditional"] = score(finished(store), asked, dataset, names)
        print(f"unconditional: {result['unconditional']}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.sheet:
        k = args.sheet_per_cell
        tiles, captions = [], []
        for name in names:
            for g, x0 in shown.items():
                rows = [i for i, a in enumerate(asked) if a == name][:k]
                for j, i in enumerate(rows):
                    tiles.append(to_uint8(x0[i]))
                    captions.append(f"{name} w={g:g}" if j == 0 else "")
        sheet = contact_sheet(np.stack(tiles), cols=k * len(shown), pad=3, scale=2, labels=captions)
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
