"""The package's shape: the stage packages import only downwards in the documented order (docs/architecture.md),
no import circles (module-level and function-local imports alike, a package's `__init__` and the front door
counted), the library never imports its command line, and the front door (`import vidtag`, help, usage errors)
does not import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vidtag"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# The stage packages from the bottom up (docs/architecture.md): a module may import its own package and those
# below it, never one above. Packages on one rank may import each other (without circles).
ORDER = [
    {"vidtag.errors", "vidtag.version"},
    {"vidtag.models"},
    {"vidtag.media"},
    {"vidtag.results"},
    {"vidtag.records"},
    {"vidtag.embeddings"},
    {"vidtag.run"},
    {"vidtag.export", "vidtag.report", "vidtag.evaluation"},
    {"vidtag"},  # the front door: the public API, imported lazily
    {"vidtag._cli", "vidtag.__main__"},
]


def rank(module: str) -> int:
    """The rank of the stage a module belongs to (its longest listed prefix)."""
    best, found = -1, -1
    for r, names in enumerate(ORDER):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), r
    return found


def import_graph() -> dict[str, set[str]]:
    """vidtag module -> the vidtag modules it imports anywhere in its code. `from .pkg import mod` counts the
    package's `__init__` too, as Python runs it; `import vidtag` and `from vidtag import x` count the front
    door."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                targets = submodules + [base]  # the package's __init__ runs either way
            else:
                continue
            for target in targets:  # importing a.b.c runs a/__init__ and a/b/__init__ first
                parts = target.split(".")
                edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
                edges.add("vidtag") if target == "vidtag" else None
            edges = {e for e in edges if e in modules and e != name and not name.startswith(e + ".")}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles():
    assert find_cycle(import_graph()) is None


def test_every_module_belongs_to_a_stage():
    assert [m for m in import_graph() if rank(m) < 0] == []


def test_no_import_climbs_against_the_order():
    climbs = sorted(f"{m} -> {i}" for m, imports in import_graph().items() for i in imports if rank(i) > rank(m))
    assert climbs == []


def test_the_climb_finder_finds_a_climb():
    assert rank("vidtag.models.families.x3d") < rank("vidtag.run.job") < rank("vidtag._cli.app")
    assert rank("vidtag") > rank("vidtag.evaluation.core") and rank("vidtag.__main__") == rank("vidtag._cli")


def test_the_library_never_imports_its_command_line():
    for module, imports in import_graph().items():
        if not module.startswith(("vidtag._cli", "vidtag.__main__")):
            assert not {i for i in imports if i.startswith("vidtag._cli")}, module


def test_no_signature_inspection():
    # interfaces are declared (vidtag.models.families.base, the settings object), never guessed from signatures
    for path in PACKAGE.rglob("*.py"):
        assert "inspect.signature" not in path.read_text(encoding="utf-8"), path


def test_front_door_does_not_import_torch():
    code = ("import sys, vidtag; from vidtag.run.settings import Settings; from vidtag.errors import OptionError\n"
            "try:\n    Settings(top_k=0)\nexcept OptionError:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
