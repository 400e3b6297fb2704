"""Data that ships with entropic: the default model (weights, config, card, its evidence and
``sampling.json``, the recipe of the default piece's store) and the default scenes.

Only locations live here; the code that uses them is in ``diffusion``, ``scenes`` and ``render``.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
MODEL_DIR = ROOT / "model"
SCENES_DIR = ROOT / "scenes"
