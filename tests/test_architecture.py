"""The layout's rules, read from the source with ``ast`` (nothing is imported):

* ``backend`` never imports gradio;
* packages import only downwards: ``chat`` -> ``kvcache`` -> ``inference``, and ``chat`` and
  ``kvcache`` may read ``documents``, which imports no other package;
* ``config``, ``redis_server``, ``auth`` and ``quotas`` import no package; nothing in ``backend`` imports ``services``;
* the UI (``components/``, ``app.py``) imports a package's public names, not its inner modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
PACKAGES = ("documents", "inference", "kvcache", "chat")
ALLOWED = {  # package -> the backend parts it may import (besides itself and config)
    "documents": set(),
    "inference": set(),
    "kvcache": {"inference", "documents"},
    "chat": {"kvcache", "inference", "documents"},
    "config": set(),
    "redis_server": set(),
    "auth": set(),
    "quotas": set(),
    "services": {*PACKAGES, "redis_server", "auth", "quotas"},
}


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
    assert entries == ["__init__.py", "auth.py", "chat", "config.py", "documents", "inference", "kvcache", "quotas.py",
                       "redis_server.py", "services.py"]
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
        for line, mod in imported_modules(path):
            parts = mod.split(".")
            if parts[0] != "backend" or len(parts) < 2:
                continue
            target = parts[1]
            if target in (here, "config"):
                continue
            if target not in ALLOWED.get(here, set()):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {mod}")
    assert not offenders, "imports against the stated direction:\n" + "\n".join(offenders)


@pytest.mark.parametrize("folder", ["components", "app.py"])
def test_the_ui_imports_packages_not_their_inner_modules(folder):
    target = ROOT / folder
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    offenders = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in files for line, mod in imported_modules(p)
                 if mod.startswith("backend.") and mod.split(".")[1] in PACKAGES and mod.count(".") > 1]
    assert not offenders, "import the package's public names instead:\n" + "\n".join(offenders)


def test_the_checks_see_a_violation(tmp_path):
    """The walker finds imports inside functions too, so a lazy upward import cannot hide."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from backend.chat import ChatService\n    import gradio as gr\n")
    assert imported_modules(sample) == [(2, "backend.chat"), (3, "gradio")]
