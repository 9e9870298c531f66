"""Dependencies that say the truth (issue 46) and locks that match them (issue 47): every module the app, its
tests, benchmarks and scripts import is declared in ``pyproject.toml`` (in a group that part may use), nothing is
declared that nothing imports (but for the few named with their reason), the locks were compiled from this
``pyproject.toml`` and pin every requirement, and the environment holds exactly the locked versions."""

from __future__ import annotations

import ast
import functools
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from lock import digest, recorded, requirements

SCOPES = {  # where code lives -> the requirement groups it may import from ("" = the app's dependencies)
    "app": ({"app.py", "backend", "components"}, {""}),
    "tests": ({"tests"}, {"", "test"}),
    "benchmarks": ({"benchmarks"}, {"", "bench", "ocr-compare"}),
    "tools": ({"scripts", "models"}, {"", "test", "bench"}),
}
NOT_IMPORTED = {  # declared, imported by nothing here, and why they are there
    "pytest-timeout": "a pytest plugin (the suite's per-test limit)",
    "pytest-xdist": "a pytest plugin (the suite's worker processes)",
    "ruff": "the linter .ci/run runs",
    "onnxruntime": "rapidocr imports it to run the OCR models but does not require it",
}
LOCKS = {"requirements.lock": {""}, "requirements-test.lock": {"", "test", "bench"}, "requirements.txt": {""}}


def local_modules(root: Path) -> set[str]:
    """Top-level names that are this tree's own modules and packages (never a distribution)."""
    names = {"backend", "components", "app", "tests", "benchmarks", "scripts", "models"}
    for folder in ("tests", "benchmarks", "scripts", "models"):
        for path in (root / folder).rglob("*.py"):
            names.update({path.stem, path.parent.name})  # a module, and the folder it sits in (tests/chat)
    return names


def imports(root: Path, parts: set[str]) -> dict[str, set[str]]:
    """Third-party top-level modules imported anywhere in ``parts`` of ``root`` -> the files importing them."""
    found: dict[str, set[str]] = {}
    skip = set(sys.stdlib_module_names) | local_modules(root)
    files = [p for part in parts for p in ([root / part] if part.endswith(".py") else (root / part).rglob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in skip:
                    found.setdefault(top, set()).add(str(path.relative_to(root)))
    return found


@functools.cache
def providers() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions providing it (``packages_distributions``, read once)."""
    return metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The distributions that provide a top-level module (its own name, normalized, when none installed does)."""
    return {canonicalize_name(d) for d in providers().get(module, [])} or {canonicalize_name(module)}


def declared(groups: set[str], pyproject: Path = ROOT / "pyproject.toml") -> set[str]:
    """Normalized names of the requirements in these groups of ``pyproject.toml``."""
    found = requirements(pyproject)
    return {canonicalize_name(Requirement(r).name) for g in groups for r in found.get(g, [])}


def undeclared(root: Path, pyproject: Path) -> list[str]:
    """Each import of the tree no group its scope may use declares, as ``module (files)``."""
    out = []
    for parts, groups in SCOPES.values():
        allowed = declared(groups, pyproject)
        for module, files in sorted(imports(root, parts).items()):
            if not distributions_of(module) & allowed:
                out.append(f"{module} ({', '.join(sorted(files)[:3])})")
    return out


def test_every_import_is_declared_where_its_code_may_use_it():
    assert not undeclared(ROOT, ROOT / "pyproject.toml"), "imported but not declared in pyproject.toml"


def test_nothing_is_declared_that_nothing_imports():
    imported = {d for parts, _ in SCOPES.values() for m in imports(ROOT, parts) for d in distributions_of(m)}
    idle = sorted(declared({"", "test", "bench", "ocr-compare"}) - imported - set(NOT_IMPORTED))
    assert not idle, f"declared in pyproject.toml but imported by nothing: {idle}"


def test_the_check_finds_an_undeclared_import(tmp_path):
    for part in ("backend", "tests", "benchmarks", "scripts", "models"):
        (tmp_path / part).mkdir()
    (tmp_path / "app.py").write_text("import gradio\nimport yaml\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    assert undeclared(tmp_path, tmp_path / "pyproject.toml") == ["yaml (app.py)"]  # pyyaml is the tests' only


def pins(lock: Path, here: bool = False) -> dict[str, str]:
    """``name -> version`` pinned by a lock file (its ``name==version [; marker] \\`` lines); with ``here``, only
    those whose environment marker holds on this interpreter (what pip installs here)."""
    out = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if re.match(r"^[A-Za-z0-9_.\-]+==", line):
            req = Requirement(line.rstrip(" \\"))
            if not here or req.marker is None or req.marker.evaluate():
                out[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return out


def unpinned(lock: Path, groups: set[str], pyproject: Path) -> list[str]:
    """The requirements of these groups that the lock does not pin, or pins at a version they do not allow."""
    pinned, out = pins(lock), []
    for group in groups:
        for line in requirements(pyproject).get(group, []):
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if name == "torch" and lock.name != "requirements.txt":
                continue  # scripts/setup.sh installs the CPU build first (TORCH_SPEC)
            if name not in pinned or not req.specifier.contains(pinned[name], prereleases=True):
                out.append(f"{line} ({pinned.get(name, 'not pinned')})")
    return out


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_was_compiled_from_this_pyproject_and_pins_every_requirement(lock):
    path = ROOT / lock
    assert recorded(path) == digest(), f"{lock} is older than pyproject.toml: run `bash scripts/lock.sh`"
    assert not unpinned(path, LOCKS[lock], ROOT / "pyproject.toml")
    text = path.read_text(encoding="utf-8")
    assert text.count("==") == len(pins(path)) and text.count("--hash=sha256:") >= len(pins(path))


def test_the_lock_check_finds_a_dependency_added_without_a_refresh(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((ROOT / "pyproject.toml").read_text().replace(
        '"tqdm>=4.60",', '"tqdm>=4.60",\n    "leftpad>=1.0",'))
    assert digest(pyproject) != recorded(ROOT / "requirements.lock")
    assert unpinned(ROOT / "requirements.lock", {""}, pyproject) == ["leftpad>=1.0 (not pinned)"]


def test_the_environment_holds_exactly_the_locked_versions():
    """What ``pip freeze`` would say, for every package the test lock pins (setup.sh --test installs it)."""
    wrong = {}
    for name, version in pins(ROOT / "requirements-test.lock", here=True).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"locked -> installed: {wrong}; run `bash scripts/setup.sh --test`"
