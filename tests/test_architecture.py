"""The shape docs/architecture.md draws, checked: layers without cycles, the only deferred imports it lists,
and the two processes' walls (torch never in the recorder; mlflow, matplotlib, onnxruntime never in training).

That `--help`, `--cfg job` and a config error load neither torch nor mlflow: tests/test_config.py."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DOC = (REPO / "docs" / "architecture.md").read_text()
# What the training process of a default run never imports (onnx it does: TorchScript's exporter writes with it).
HEAVY_FOR_TRAINING = ("mlflow", "matplotlib", "onnxruntime", "sklearn", "torchvision")


def table(heading: str) -> list[list[str]]:
    """The rows of the markdown table under `## heading`, as cells."""
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def imports(path: Path) -> list[tuple[str | None, str]]:
    """(enclosing function or None, imported module) for every import in a file."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend((function, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((function, child.module if child.level == 0 else f".{child.module}"))
            visit(child, inner)

    visit(ast.parse(path.read_text()), None)
    return found


def unit(module: str) -> str:
    """sweeplab.tracking.session -> tracking: the package, which is the layer's unit."""
    return module.split(".")[1]


def test_the_packages_are_the_layers() -> None:
    """`ls src/sweeplab` shows the architecture: packages only, each in a layer of the table."""
    top = SRC / "sweeplab"
    assert sorted(path.name for path in top.glob("*.py")) == ["__init__.py"], "a module outside the packages"
    packages = {path.parent.name for path in top.glob("*/__init__.py")}
    listed = {name for _, names, _ in table("Layers: who may import whom") for name in re.findall(r"[a-z_]+", names)}
    assert packages == listed


def test_modules_that_moved_still_import_under_their_old_names() -> None:
    """A user's config may name a module by the path it had before the packages became the layers."""
    code = ("import importlib, sweeplab\n"
            "assert all(importlib.import_module(old) is importlib.import_module(new) "
            "for old, new in sweeplab.MOVED.items())\n"
            "from hydra.utils import get_method; get_method('sweeplab.masking.MaskingFilter')")
    subprocess.run([sys.executable, "-c", code], check=True)


def sweeplab_edges() -> set[tuple[str, str]]:
    edges = set()
    for path in (SRC / "sweeplab").rglob("*.py"):
        source = unit(".".join(path.relative_to(SRC).with_suffix("").parts + ("x",)))
        for _, module in imports(path):
            if module.startswith("sweeplab.") and unit(module) != source:
                edges.add((source, unit(module)))
    return edges


def test_packages_import_each_other_only_down_the_layers() -> None:
    layer_of = {}
    for index, (_, modules, _) in enumerate(table("Layers: who may import whom")):
        for name in re.findall(r"[a-z_]+", modules):
            layer_of[name] = index
    edges = sweeplab_edges()
    assert {name for edge in edges for name in edge} <= set(layer_of), "every package is in a layer"
    upward = sorted((a, b) for a, b in edges if layer_of[b] > layer_of[a])
    assert not upward, f"imports up the layers: {upward}"
    same_layer = {(a, b) for a, b in edges if layer_of[a] == layer_of[b]}
    cycles = sorted((a, b) for a, b in same_layer if (b, a) in same_layer)
    assert not cycles, f"packages importing each other: {cycles}"


def test_deferred_imports_are_the_listed_boundaries() -> None:
    """Which module each file defers, and in which functions, as the table lists them."""
    listed_modules, listed_functions = set(), set()
    for where, what, _ in table("Imports inside functions"):
        file = where.split("`")[0].strip()
        listed_functions |= {(file, function) for function in re.findall(r"`(\w+)`", where)}
        listed_modules |= {(file, module.strip()) for module in what.split(",")}
    modules, functions = set(), set()
    for path in SRC.rglob("*.py"):
        file = str(path.relative_to(SRC))
        deferred = [(function, module) for function, module in imports(path) if function]
        modules |= {(file, module.lstrip(".")) for _, module in deferred}
        functions |= {(file, function) for function, _ in deferred}
    assert (modules - listed_modules, functions - listed_functions) == (set(), set()), "not in docs/architecture.md"
    assert (listed_modules - modules, listed_functions - functions) == (set(), set()), "listed, but gone"


def modules_after(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                            capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_every_call_the_recorder_takes_resolves_without_torch() -> None:
    """remote.py's table is every function the training process may name: each resolves, and none loads torch."""
    code = ("from sweeplab.recorder.calls import resolve; from sweeplab.recorder.remote import Remote\n"
            "assert all(callable(resolve(target)) for target in Remote)")
    loaded = modules_after(code)
    assert "mlflow" in loaded and "onnxruntime" in loaded and "torch" not in loaded


@pytest.mark.slow
def test_a_default_run_trains_without_mlflow_matplotlib_or_onnxruntime_in_its_process(tmp_path: Path) -> None:
    """`python train.py` with tracking and export on: the recorder does that work, the trainer imports none of it."""
    code = (f"import runpy, sys; sys.argv = ['train.py', 'trainer.epochs=1', 'trainer.progress=false', "
            f"'hydra.run.dir={tmp_path / 'run'}']\n"
            f"try:\n    runpy.run_path({str(REPO / 'train.py')!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass")
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}
    assert "torch" in loaded and not loaded & set(HEAVY_FOR_TRAINING), loaded & set(HEAVY_FOR_TRAINING)
    assert (tmp_path / "run" / "export" / "model.onnx").is_file() and (tmp_path / "mlflow.db").is_file()


def test_checkpoints_are_loaded_weights_only_everywhere() -> None:
    """A checkpoint is a pickle: torch.load may run code from one unless it is told to read tensors only."""
    calls = [(path, line) for path in SRC.rglob("*.py") for line in path.read_text().splitlines()
             if "torch.load(" in line]
    assert calls, "the scan found no torch.load at all: is it still looking in the right place?"
    assert all("weights_only=True" in line for _, line in calls), calls
