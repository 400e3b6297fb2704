"""The floor plan, enforced: who may import whom (README.md, "Layout").

Read statically from the source, every import counted, also those inside functions: a lazy
import is still a dependency, only a later one.

- the trajectory store (``diffusion/store``), ``scenes/`` and the sinks in ``render/`` (all but
  ``render/cli/`` and ``render/verify``, which replays trajectories from the weights) never
  import torch, directly or through another project module;
- ``diffusion/`` never imports ``scenes/`` or ``render/``; ``scenes/`` never imports ``render/``;
- nothing in the project imports ``assets`` but the default piece (``render/cli/default_piece.py``);
- there is no import cycle among the project's modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diffusion", "scenes", "render", "assets")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(project module -> project modules it imports, project module -> outside top-level names)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    inner: dict[str, set[str]] = {}
    outer: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        ext: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                # the longest project module that the import names (a module, or a name inside one)
                hit = next((t[:i] for i in sorted({len(t)} | {k for k, c in enumerate(t) if c == "."}, reverse=True)
                            if t[:i] in files), None)
                if hit is not None:
                    if hit != name:
                        deps.add(hit)
                elif t.split(".")[0] not in PACKAGES:
                    ext.add(t.split(".")[0])
        inner[name], outer[name] = deps, ext
    return inner, outer


INNER, OUTER = _graph()


def _reach(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for dep in INNER[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


# Settings and vocabularies that configs, help pages and the default piece's recipe read.
TORCH_FREE_SETTINGS = {
    "diffusion.model.config", "diffusion.model.schedules", "diffusion.record_settings",
    "diffusion.training.settings", "diffusion.runs.layout",
}


def _torch_free(name: str) -> bool:
    return name in TORCH_FREE_SETTINGS or name.startswith(("diffusion.store", "scenes")) or (
        name.startswith("render") and not name.startswith(("render.cli", "render.verify"))
    )


def test_the_graph_is_read():
    assert "diffusion.store.reader" in INNER and "scenes.frames" in INNER and "render.cli" in INNER
    assert "torch" in OUTER["diffusion.model.unet"]  # the rules below would pass vacuously otherwise
    assert "diffusion.store.format" in INNER["diffusion.store.reader"]


@pytest.mark.parametrize("name", sorted(n for n in INNER if _torch_free(n)))
def test_store_scenes_and_sinks_never_import_torch(name):
    through = sorted(m for m in _reach(name) if "torch" in OUTER[m])
    assert not through, f"{name} reaches torch through {through}"


def test_layers_point_one_way():
    wrong = []
    for name, deps in INNER.items():
        for dep in deps:
            if name.startswith("diffusion") and dep.startswith(("scenes", "render")):
                wrong.append((name, dep))
            if name.startswith("scenes") and dep.startswith("render"):
                wrong.append((name, dep))
            if dep.startswith("assets") and name != "render.cli.default_piece":
                wrong.append((name, dep))
    assert not wrong


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in INNER[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(INNER):
        if v not in index:
            visit(v)
    assert not cycles


def test_importing_the_torch_free_half_leaves_torch_out():
    names = [n for n in sorted(INNER) if _torch_free(n) and n != "render.live_window"]
    probe = f"import sys; import {', '.join(names)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_help_pages_and_the_default_recipe_leave_torch_out():
    """`train --help`, `sample --help` and reading the default piece's recipe (every render of it) need no torch."""
    probe = (
        "import sys\n"
        "from render.cli import main, default_piece\n"
        "default_piece.sampling_recipe()\n"
        "for command in ('train', 'sample', 'render'):\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stderr.strip() == "False"
