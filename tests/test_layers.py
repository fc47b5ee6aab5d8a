"""The package's import graph: no circles, and the lower layers never import the higher ones.

Data flows one way (recipe -> train -> export -> inspect -> bench -> report), and so do imports:
`datasets`, `pruning`, `zoo` and `tflite` are what the stages are built from and import nothing
from the stages themselves. The graph is read from the source with `ast` (no TensorFlow, no
import side effects) and counts every import, also those inside functions: a lazy import
hides a circle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tfsparse"
LOWER = ("datasets", "pruning", "zoo", "tflite")
HIGHER = ("training", "exporting", "benchmarking", "reporting", "pipeline")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root` (a package's name is its __init__)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported tfsparse module: line of the first such import}.

    `from a.b import c` names module `a.b.c` when that is a module, else `a.b` (c is an
    attribute of it). Importing a module also runs its parent packages' `__init__`, which is
    not counted: only what the source names is.
    """
    modules = module_files(root)
    top = root.name

    def known(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x / from ..a import b
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base) for a in node.names]
            for target in targets:
                if (target == top or target.startswith(top + ".")) and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import circle as [a, b, ..., a] with the line of each import, or None."""
    try:
        graphlib.TopologicalSorter({m: set(e) for m, e in graph.items()}).prepare()
    except graphlib.CycleError as e:
        loop = e.args[1][::-1]  # graphlib lists it against the import direction
        return [f"{a}:{graph[a][b]} -> {b}" for a, b in zip(loop, loop[1:])]
    return None


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_package_has_no_import_circles():
    found = cycle(import_graph())
    assert found is None, "import circle: " + ", ".join(found)


@pytest.mark.parametrize("lower", LOWER)
def test_a_lower_layer_imports_no_stage(lower):
    graph = import_graph()
    assert any(layer(m) == lower for m in graph), f"no tfsparse.{lower} package: the layer list is stale"
    upward = [f"{m}:{line} -> {target}" for m, edges in sorted(graph.items()) if layer(m) == lower
              for target, line in sorted(edges.items()) if layer(target) in HIGHER]
    assert not upward, f"tfsparse.{lower} imports a stage: " + ", ".join(upward)


def test_the_graph_sees_circles_hidden_in_functions(tmp_path):
    """What the two tests above rely on: a lazy import inside a function closes a circle, a
    package and its module importing each other is one, and `from pkg import module` names the
    module, not the package."""
    pkg = tmp_path / "tfsparse"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("def load():\n    from tfsparse.data import sets\n")
    (pkg / "data" / "sets.py").write_text("from tfsparse.data import load\n")
    (pkg / "recipe.py").write_text("def section():\n    from tfsparse.train import config\n")
    (pkg / "train.py").write_text("from tfsparse import recipe\n")
    graph = import_graph(pkg)
    assert graph["tfsparse.train"] == {"tfsparse.recipe": 1}
    assert graph["tfsparse.data.sets"] == {"tfsparse.data": 1}
    found = cycle(graph)
    assert found is not None and len(found) == 2
    (pkg / "data" / "sets.py").write_text("LOAD = 1\n")
    (pkg / "recipe.py").write_text("")
    assert cycle(import_graph(pkg)) is None
