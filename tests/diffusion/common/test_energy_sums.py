"""Adding energy up: sessions into sums, stages into a piece, and the one line that says what a piece cost."""

from __future__ import annotations

import pytest

from diffusion.common.energy_sums import MIXED, add_session, check_sum, cost_line, piece_energy, sum_sessions
from diffusion.common.errors import EntropicError

MEASURED = {"kind": "measured", "joules": 2000.0, "seconds": 10.0, "source": "RAPL"}
ESTIMATE = {"kind": "estimate", "joules": 500.0, "seconds": 5.0, "source": "assumed"}


def test_sessions_sum_and_keep_their_kinds():
    total = add_session(add_session(None, MEASURED), ESTIMATE)
    assert total == {"kind": MIXED, "joules": 2500.0, "seconds": 15.0, "sessions": [MEASURED, ESTIMATE]}
    assert check_sum(total, "header.json: energy") == total
    lower = add_session(None, MEASURED, complete=False)
    assert lower["complete"] is False and add_session(lower, MEASURED)["complete"] is False  # stays a lower bound
    with pytest.raises(EntropicError, match="header.json: energy.seconds: must be a number"):
        check_sum({**total, "seconds": "long"}, "header.json: energy")


def test_a_piece_adds_its_stages_and_says_what_is_unknown():
    piece = piece_energy([MEASURED], [sum_sessions([ESTIMATE])], sum_sessions([MEASURED]))
    assert piece["total_joules"] == 4500.0 and piece["complete"] is True and piece["kind"] == MIXED
    assert cost_line(piece) == ("this piece cost 4.5 kJ (training 2.0 kJ, sampling 0.500 kJ, render 2.0 kJ; "
                                "partly measured, partly estimated)")
    partial = piece_energy(["unknown"], [sum_sessions([ESTIMATE]), "unknown"], sum_sessions([ESTIMATE]))
    assert partial["complete"] is False and partial["total_joules"] == 1000.0
    assert cost_line(partial) == ("this piece cost at least 1.0 kJ (training unknown, sampling at least 0.500 kJ, "
                                  "render 0.500 kJ; estimated)")
    nothing = piece_energy(["unknown"], ["unknown"], "unknown")
    assert cost_line(nothing) == "this piece cost: unknown (training unknown, sampling unknown, render unknown)"
    assert cost_line(None) == "this piece cost: unknown (made before entropic recorded energy)"
    assert cost_line(piece_energy([MEASURED], None)) == "this piece cost 2.0 kJ (training 2.0 kJ; measured)"
