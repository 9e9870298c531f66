"""The layout's rules, read from the source with ``ast`` (nothing is imported):

* ``backend`` never imports gradio;
* packages import only downwards: ``chat`` -> ``kvcache`` -> ``inference``, ``chat`` -> ``grounding``, and
  ``chat``, ``kvcache`` and ``grounding`` may read ``documents``, which imports no other package;
* ``config`` and ``storage`` (the data dir's upkeep) import no other package, nor does ``access`` (sign-in, roles,
  quotas) but ``storage``; every package may read ``storage`` (free space, atomic writes, ids checked against their
  folder, sizes in words); nothing in ``backend`` imports ``services``;
* the UI (``components/``, ``app.py``) imports a package's public names, not its inner modules;
* no module imports itself through a circle of imports (``TYPE_CHECKING`` and function-level ones count);
* a command run with ``python -m`` that drives the whole app (``COMMANDS``) may import any part, as ``app.py`` does;
  no module imports a command.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
PACKAGES = ("documents", "inference", "kvcache", "grounding", "chat", "access", "storage")
ALLOWED = {  # package -> the backend parts it may import (besides itself and config)
    "documents": {"storage"},
    "inference": {"storage"},  # atomic writes, ids checked against their folder
    "kvcache": {"inference", "documents", "storage"},
    "grounding": {"documents"},
    "chat": {"kvcache", "inference", "documents", "grounding", "storage"},  # storage: a question's images are kept
    "access": {"storage"},  # sizes printed the one way
    "storage": set(),
    "config": set(),
    "services": set(PACKAGES),
}
COMMANDS = {"backend/grounding/calibrate.py": {*PACKAGES, "services"}}  # asks the model questions through the app


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (function-level imports too), with line numbers."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def part_of(path: Path) -> str:
    """The backend part a file belongs to: a package name, or a top-level module's stem."""
    rel = path.relative_to(BACKEND)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def backend_files() -> list[Path]:
    return sorted(p for p in BACKEND.rglob("*.py") if p.name != "__init__.py" or p.parent != BACKEND)


def test_the_layout_has_few_top_level_entries_each_documented():
    entries = sorted(p.name for p in BACKEND.iterdir() if p.name != "__pycache__")
    assert entries == ["__init__.py", "access", "chat", "config.py", "documents", "grounding", "inference", "kvcache",
                       "services.py", "storage"]
    assert len(entries) <= 10
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((BACKEND / package / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"backend/{package}/__init__.py needs a docstring saying what it owns"


def test_backend_never_imports_gradio():
    offenders = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in backend_files()
                 for line, mod in imported_modules(p) if mod.split(".")[0] in ("gradio", "gradio_client")]
    assert not offenders, "\n".join(offenders)


def test_packages_import_only_downwards():
    offenders = []
    for path in backend_files():
        here = part_of(path)
        allowed = COMMANDS.get(path.relative_to(ROOT).as_posix(), ALLOWED.get(here, set()))
        for line, mod in imported_modules(path):
            parts = mod.split(".")
            if parts[0] != "backend" or len(parts) < 2:
                continue
            target = parts[1]
            if target in (here, "config"):
                continue
            if target not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {mod}")
    assert not offenders, "imports against the stated direction:\n" + "\n".join(offenders)


@pytest.mark.parametrize("folder", ["components", "app.py"])
def test_the_ui_imports_packages_not_their_inner_modules(folder):
    target = ROOT / folder
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    offenders = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in files for line, mod in imported_modules(p)
                 if mod.startswith("backend.") and mod.split(".")[1] in PACKAGES and mod.count(".") > 1]
    assert not offenders, "import the package's public names instead:\n" + "\n".join(offenders)


def test_no_module_imports_a_command():
    commands = {module_of(ROOT / c, ROOT) for c in COMMANDS}
    offenders = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in [*backend_files(), *(ROOT / "components").rglob(
        "*.py"), ROOT / "app.py"] for line, mod in imported_modules(p) if mod in commands]
    assert not offenders, "\n".join(offenders)


def test_the_checks_see_a_violation(tmp_path):
    """The walker finds imports inside functions too, so a lazy upward import cannot hide."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from backend.chat import ChatService\n    import gradio as gr\n")
    assert imported_modules(sample) == [(2, "backend.chat"), (3, "gradio")]


def module_of(path: Path, root: Path) -> str:
    """A file's dotted module name under ``root`` (a package's ``__init__.py`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``module -> the backend modules it imports`` for every file under ``root/backend``, imports inside
    functions and ``TYPE_CHECKING`` blocks included (``from backend.x import y`` counts as importing
    ``backend.x.y`` when that is a module, else ``backend.x``)."""
    files = sorted((root / "backend").rglob("*.py"))
    modules = {module_of(p, root): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None. A package's ``__init__`` re-exporting its own
    modules is not a circle unless one of them imports the package back."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_module_imports_itself_through_a_circle():
    circle = find_circle(import_graph(ROOT))
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_check_sees_a_deliberate_circle(tmp_path):
    shutil.copytree(BACKEND, tmp_path / "backend", ignore=shutil.ignore_patterns("__pycache__"))
    sequence = tmp_path / "backend" / "inference" / "sequence.py"
    sequence.write_text(sequence.read_text(encoding="utf-8") + "\n\ndef _host():\n"
                        "    from backend.inference.engine import Engine\n    return Engine\n", encoding="utf-8")
    circle = find_circle(import_graph(tmp_path))
    assert circle is not None and "backend.inference.engine" in circle and "backend.inference.sequence" in circle
