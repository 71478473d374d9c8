"""Every third-party package the code imports is declared in pyproject.toml, and every declared one is imported.

A package that only arrives through another's dependencies (``rich`` through typer) disappears the day that other
package drops it, and the daemon then fails at import in production. The imports are read from the source (the
AST of every module under parsers/ storage/ rules/ daemon/, including imports inside functions) and mapped to
distributions with ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("parsers", "storage", "rules", "daemon")
# Declared for what they bring rather than for an import: psycopg is loaded by SQLAlchemy from the URL.
NOT_IMPORTED = {"psycopg", "python-multipart"}  # the last: what Starlette reads form posts with


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, set[str]]:
    """Top-level module names imported anywhere, with the files that import them."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonical(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def third_party() -> dict[str, set[str]]:
    """Distribution -> files, for every imported module that is neither ticketd's, the standard library's, nor
    ``__future__``."""
    owners = packages_distributions()
    result: dict[str, set[str]] = {}
    for module, files in imported_modules().items():
        if module in ("ticketd", "__future__") or module in sys.stdlib_module_names:
            continue
        dists = owners.get(module)
        assert dists, f"{module} (imported in {sorted(files)}) is not installed, or no distribution provides it"
        for dist in dists:
            result.setdefault(canonical(dist), set()).update(files)
    return result


def test_every_imported_package_is_declared() -> None:
    missing = {dist: sorted(files) for dist, files in third_party().items() if dist not in declared()}
    assert missing == {}, f"imported but not in [project] dependencies: {missing}"


def test_every_declared_package_is_imported() -> None:
    unused = declared() - set(third_party()) - NOT_IMPORTED
    assert unused == set(), f"declared but never imported: {sorted(unused)}"


def test_the_scan_sees_imports_inside_functions() -> None:
    """The check itself: lazy imports (the CLI's) count, or the test would pass by not looking."""
    modules = imported_modules()
    assert "daemon/cli/main.py" in modules["ticketd"]
    assert any(name in modules for name in ("matplotlib", "openpyxl"))
