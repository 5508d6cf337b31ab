"""The dependency rules of ../shared/DESIGN.md (Layout), checked on the import graph of the source tree.

Every .py file of the distribution is parsed with `ast`; every import counts — module level, lazy
(inside functions), under `if TYPE_CHECKING:`, and module paths a registry holds as strings for
importlib ("edgeml.runtime.cli_serve:serve") — with relative imports resolved through the
`package-dir` mapping of pyproject.toml (convert/ -> edgeml.convert ...). Rules:

- the app layer (the CLI root, the demo, `python -m edgeml`, the entry modules that join parts) may
  import anything;
- core (edgeml/* otherwise) imports no part; runtime imports core only; convert imports core and
  runtime; train and fleet import core only (so fleet never imports runtime and nothing but the app
  layer imports fleet); no part imports the app layer;
- no import cycles between modules anywhere.
"""

from __future__ import annotations

import ast
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

APP_LAYER = frozenset({"edgeml.cli", "edgeml.demo", "edgeml.demo_cli", "edgeml.__main__",
                       "edgeml.simulate_cli", "edgeml.fleet_cli"})
PARTS = ("convert", "train", "runtime", "fleet")
# "edgeml.runtime.cli_serve:serve": a module path held as a string by a registry (lazy CLI commands,
# exporters, source loaders, backends) and imported with importlib; it counts as an import.
DYNAMIC = re.compile(r"^edgeml(\.[A-Za-z_][A-Za-z0-9_]*)+(:[A-Za-z_][A-Za-z0-9_.]*)?$")
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "runtime": frozenset({"core", "runtime"}),
    "convert": frozenset({"core", "convert", "runtime"}),
    "train": frozenset({"core", "train"}),
    "fleet": frozenset({"core", "fleet"}),
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (inside the package)
    path: Path
    line: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def package_dirs(root: Path) -> dict[str, Path]:
    config = tomllib.loads((root / "pyproject.toml").read_text())
    return {pkg: root / folder for pkg, folder in config["tool"]["setuptools"]["package-dir"].items()}


def modules(dirs: dict[str, Path]) -> dict[str, Path]:
    """Module name -> file, for every .py file under the mapped folders (nested mappings win)."""
    found: dict[str, Path] = {}
    for pkg, folder in sorted(dirs.items(), key=lambda item: len(item[0])):
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([pkg, *parts])] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that `name` is or lies inside (None: not ours)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(known: dict[str, Path]) -> list[Import]:
    found = []
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        package = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
                names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DYNAMIC.match(node.value):
                names = [node.value.partition(":")[0]]  # a registry entry, imported with importlib
            else:
                continue
            for name in names:
                target = _resolve(name, known)
                if target is not None and target != module:
                    found.append(Import(module, target, path, node.lineno))
    return found


def layer(module: str) -> str:
    if module in APP_LAYER:
        return "app"
    part = module.split(".")[1] if module.count(".") else ""
    return part if part in PARTS else "core"


def violations(edges: list[Import], root: Path) -> list[str]:
    bad = []
    for edge in edges:
        src, dst = layer(edge.source), layer(edge.target)
        if src == "app" or dst in ALLOWED[src]:
            continue
        bad.append(f"{edge.where(root)}: {edge.source} ({src}) imports {edge.target} ({dst})")
    return sorted(set(bad))


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def describe_cycles(edges: list[Import], root: Path) -> list[str]:
    out = []
    for component in cycles(edges):
        members = set(component)
        links = sorted({f"{e.where(root)} {e.source} -> {e.target}" for e in edges
                        if e.source in members and e.target in members})
        out.append(" <-> ".join(component) + "\n      " + "\n      ".join(links))
    return out


def check_tree(root: Path) -> tuple[list[str], list[str]]:
    edges = imports(modules(package_dirs(root)))
    return violations(edges, root), describe_cycles(edges, root)


# -- the real tree -----------------------------------------------------------------------------


def test_every_part_is_mapped_and_parsed():
    known = modules(package_dirs(ROOT))
    for pkg in ("edgeml", *(f"edgeml.{p}" for p in PARTS)):
        assert pkg in known, f"{pkg} is not mapped by pyproject's package-dir"
    assert "edgeml.runtime.agent.installer" in known and "edgeml.fleet.rollouts.engine" in known
    edges = imports(known)
    # A lazy import inside a function is seen (the CLI root imports every part lazily).
    assert any(e.source == "edgeml.cli" and e.target.startswith("edgeml.runtime") for e in edges)


def test_layers_import_only_what_the_design_allows():
    bad, _ = check_tree(ROOT)
    assert not bad, "forbidden imports:\n  " + "\n  ".join(bad)


def test_no_import_cycles():
    _, found = check_tree(ROOT)
    assert not found, "import cycles:\n  " + "\n  ".join(found)


# -- the checker itself ------------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "edgeml" = "edgeml", "edgeml.runtime" = "runtime", '
        '"edgeml.fleet" = "fleet", "edgeml.convert" = "convert", "edgeml.train" = "train" }\n')
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checker_fails_on_a_lazy_forbidden_import_added_to_a_real_file(tmp_path):
    root = _tree(tmp_path, {f"{d}/__init__.py": "" for d in ("edgeml", "runtime", "runtime/agent", "fleet")})
    shutil.copy(ROOT / "runtime" / "agent" / "store.py", root / "runtime" / "agent" / "store.py")
    (root / "fleet" / "api.py").write_text("")
    assert check_tree(root) == ([], [])  # the copy alone is clean
    store = root / "runtime" / "agent" / "store.py"
    store.write_text(store.read_text() + "\n\ndef peek():\n    from ...fleet import api\n    return api\n")
    line = store.read_text().splitlines().index("    from ...fleet import api") + 1
    bad, _ = check_tree(root)
    assert bad == [f"runtime/agent/store.py:{line}: edgeml.runtime.agent.store (runtime) imports edgeml.fleet.api (fleet)"]


@pytest.mark.parametrize("rel, text, culprit", [
    ("edgeml/bundle.py", "import edgeml.runtime.model\n", "edgeml.bundle (core) imports edgeml.runtime.model (runtime)"),
    ("edgeml/bundle.py", "from edgeml import cli\n", "edgeml.bundle (core) imports edgeml.cli (app)"),
    ("fleet/api.py", "from edgeml.runtime import model\n", "edgeml.fleet.api (fleet) imports edgeml.runtime.model (runtime)"),
    ("train/run.py", "from ..convert import pipeline\n", "edgeml.train.run (train) imports edgeml.convert.pipeline (convert)"),
    ("runtime/model.py", "if True:\n    from edgeml.convert.pipeline import convert\n", "edgeml.runtime.model (runtime) imports edgeml.convert.pipeline (convert)"),
    ("convert/pipeline.py", "from edgeml.fleet.api import x\n", "edgeml.convert.pipeline (convert) imports edgeml.fleet.api (fleet)"),
])
def test_the_checker_names_each_kind_of_forbidden_import(tmp_path, rel, text, culprit):
    files = {f"{d}/__init__.py": "" for d in ("edgeml", "runtime", "fleet", "convert", "train")}
    files.update({"edgeml/cli.py": "", "runtime/model.py": "", "fleet/api.py": "", "convert/pipeline.py": "",
                  "train/run.py": ""})
    files[rel] = text
    bad, _ = check_tree(_tree(tmp_path, files))
    assert [b.split(": ", 1)[1] for b in bad] == [culprit]


def test_allowed_imports_pass(tmp_path):
    files = {f"{d}/__init__.py": "" for d in ("edgeml", "runtime", "fleet", "convert", "train")}
    files.update({
        "edgeml/schema.py": "import numpy\nfrom . import errors\n", "edgeml/errors.py": "",
        "edgeml/cli.py": "def main():\n    import edgeml.fleet.api, edgeml.runtime.model, edgeml.convert.pipeline\n",
        "runtime/model.py": "from edgeml.schema import x\n", "convert/pipeline.py": "from edgeml.runtime import model\n",
        "fleet/api.py": "from ..schema import x\n", "train/run.py": "from edgeml import errors\n",
    })
    assert check_tree(_tree(tmp_path, files)) == ([], [])


def test_the_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    files = {f"{d}/__init__.py": "" for d in ("edgeml", "fleet", "fleet/rollouts")}
    files.update({"fleet/db.py": "from .rollouts import models\n",
                  "fleet/rollouts/models.py": "def f():\n    from .. import db\n"})
    _, found = check_tree(_tree(tmp_path, files))
    assert len(found) == 1 and found[0].startswith("edgeml.fleet.db <-> edgeml.fleet.rollouts.models")
    assert "fleet/rollouts/models.py:2" in found[0]
