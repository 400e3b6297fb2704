"""Adding energy records up: a store's recording sessions, a piece's training + sampling + rendering, and their one line.

Records come from :class:`diffusion.common.energy.EnergyMeter` (``{"kind", "joules",
"seconds", "source", ...}``). Sums keep what they add up, so a measurement and an estimate are
never blended silently:

* a **sum of sessions** (a store's ``energy``, a render's): ``{"kind", "joules", "seconds",
  "sessions": [record, ...]}``, ``kind`` being ``"measured"``, ``"estimate"`` or
  ``"partly measured, partly estimated"``, plus ``"complete": false`` when some of the work it
  stands for was done by sessions whose energy was never recorded (then it is a lower bound);
* a **piece** (a video's ``energy``): ``{"training": [...], "sampling": [...], "render": ...,
  "total_joules", "complete", "kind"}``, each part a record or sum, or ``"unknown"`` where it
  was not recorded; ``total_joules`` adds the known parts and ``complete`` says whether every
  part was known.

No torch, no numpy: the store format, the render provenance and the report all read these.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from diffusion.common.errors import EntropicError
from diffusion.common.validation import Invalid, brief, choice, number, type_name

UNKNOWN = "unknown"
MIXED = "partly measured, partly estimated"
KINDS = ("measured", "estimate", MIXED)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def known(part: Any) -> bool:
    """Whether ``part`` is a record or a sum with a number of joules (not "unknown")."""
    return isinstance(part, Mapping) and _is_number(part.get("joules"))


def combined_kind(kinds: Iterable[Any]) -> str:
    """"measured" when every part was, "estimate" when every part was, else :data:`MIXED` (a card's mixed kind included)."""
    seen = {"measured" if k == "measured" else ("estimate" if k == "estimate" else MIXED) for k in kinds}
    if len(seen) == 1:
        return seen.pop()
    return MIXED if seen else UNKNOWN


def complete(part: Any) -> bool:
    """Whether a known part counts all it stands for (a sum marked ``"complete": false`` is a lower bound)."""
    return known(part) and part.get("complete", True) is not False


def sum_sessions(sessions: Sequence[Mapping[str, Any]], *, whole: bool = True) -> dict[str, Any]:
    """The sum of ``sessions`` (records), keeping each one, in order, with its own kind and source.

    ``whole`` False: some sessions' energy was never recorded (a killed one, an older entropic's),
    so the sum is a lower bound, written ``"complete": false``.
    """
    kept = [dict(s) for s in sessions]
    out = {
        "kind": combined_kind(s.get("kind") for s in kept),
        "joules": round(sum(float(s["joules"]) for s in kept), 3),
        "seconds": round(sum(float(s.get("seconds", 0.0)) for s in kept), 3),
        "sessions": kept,
    }
    return out if whole else {**out, "complete": False}


def accounted(total: Any, unit: str) -> int:
    """How much work (``unit``: "samples", "frames") the sessions of a sum say they did; 0 for none."""
    sessions = total.get("sessions") if isinstance(total, Mapping) else None
    return sum(int(s.get(unit, 0)) for s in sessions or [] if isinstance(s, Mapping))


def add_session(total: Mapping[str, Any] | None, session: Mapping[str, Any], *, complete: bool = True) -> dict[str, Any]:
    """``total`` (a sum of sessions, or None for none yet) with one more session added.

    ``complete`` False: work done before this session went unrecorded; a sum that was a lower
    bound stays one.
    """
    earlier = list(total.get("sessions") or []) if isinstance(total, Mapping) else []
    whole = complete and (total is None or total.get("complete", True) is not False)
    return sum_sessions([*earlier, session], whole=whole)


def piece_energy(training: Sequence[Any], sampling: Sequence[Any] | None, render: Any = None) -> dict[str, Any]:
    """A piece's energy from its parts (each a record, a sum or "unknown"); None leaves a stage out.

    ``training``: one entry per model, ``sampling`` one per store, ``render`` the render's sum.
    """
    parts: dict[str, Any] = {"training": list(training)}
    if sampling is not None:
        parts["sampling"] = list(sampling)
    if render is not None:
        parts["render"] = render
    every = [*parts["training"], *parts.get("sampling", []), *([render] if render is not None else [])]
    found = [p for p in every if known(p)]
    return {
        **parts,
        "total_joules": round(sum(float(p["joules"]) for p in found), 3),
        "complete": all(complete(p) for p in every),
        "kind": combined_kind(p.get("kind") for p in found),
    }


def fmt_kj(joules: float) -> str:
    """Joules in kJ, with enough digits for a small test render and none too many for a long training."""
    kj = joules / 1e3
    if kj >= 100:
        return f"{kj:,.0f} kJ"
    if kj >= 1:
        return f"{kj:,.1f} kJ"
    return f"{kj:.3f} kJ"


def _kind_word(kind: str) -> str:
    return {"measured": "measured", "estimate": "estimated"}.get(kind, kind)


def part_text(parts: Sequence[Any] | Any) -> str:
    """One stage's figure: "2.0 kJ", "at least 2.0 kJ" when some of its parts are unknown, "unknown", "none"."""
    items = list(parts) if isinstance(parts, (list, tuple)) else [parts]
    if not items:
        return "none"
    found = [p for p in items if known(p)]
    if not found:
        return UNKNOWN
    text = fmt_kj(sum(float(p["joules"]) for p in found))
    return text if all(complete(p) for p in items) else f"at least {text}"


def sum_line(total: Any) -> str:
    """One stage's sum in words: "1.2 kJ over 30.0 s, estimated (2 sessions: 1 measured, 1 estimated)", or "unknown"."""
    if not known(total):
        return UNKNOWN
    sessions = [s for s in total.get("sessions") or [] if isinstance(s, Mapping)]
    kinds = [_kind_word(str(s.get("kind"))) for s in sessions]
    counts = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
    text = f"{fmt_kj(float(total['joules']))} over {float(total.get('seconds', 0.0)):,.1f} s, {_kind_word(str(total.get('kind')))}"
    text += f" ({len(sessions)} session{'s' if len(sessions) != 1 else ''}: {counts})" if sessions else ""
    return text if complete(total) else f"at least {text}; earlier sessions were not measured"


def cost_line(piece: Mapping[str, Any] | None) -> str:
    """"this piece cost N kJ (training A, sampling B, render C; estimated)" for a piece's energy."""
    if not isinstance(piece, Mapping):
        return "this piece cost: unknown (made before entropic recorded energy)"
    stages = [(name, piece[name]) for name in ("training", "sampling", "render") if name in piece]
    listed = ", ".join(f"{name} {part_text(part)}" for name, part in stages)
    if piece.get("kind") == UNKNOWN or not any(known(p) for _, part in stages
                                               for p in (part if isinstance(part, list) else [part])):
        return f"this piece cost: unknown ({listed})"
    total = fmt_kj(float(piece.get("total_joules", 0.0)))
    at_least = "" if piece.get("complete") else "at least "
    return f"this piece cost {at_least}{total} ({listed}; {_kind_word(str(piece.get('kind')))})"


def check_sum(value: Any, where: str) -> dict[str, Any]:
    """A sum of sessions read from a file, checked: one EntropicError naming ``where`` (file and key) otherwise."""
    if not isinstance(value, Mapping):
        raise EntropicError(f"{where}: must be an object, got {type_name(value)}")
    checks: list[tuple[str, Any]] = [("kind", choice(KINDS)), ("joules", number(lo=0)), ("seconds", number(lo=0))]
    for key, check in checks:
        try:
            check(value.get(key), key)
        except Invalid as err:
            raise EntropicError(f"{where}.{key}: {err}") from None
    if "complete" in value and not isinstance(value["complete"], bool):
        raise EntropicError(f"{where}.complete: must be true or false, got {brief(value['complete'])}")
    sessions = value.get("sessions")
    if not isinstance(sessions, list):
        raise EntropicError(f"{where}.sessions: must be an array of records, got {type_name(sessions)}")
    for k, session in enumerate(sessions):
        if not known(session):
            raise EntropicError(f"{where}.sessions[{k}]: must be a record with a number of joules, got {brief(session)}")
    return dict(value)
