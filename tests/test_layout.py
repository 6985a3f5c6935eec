"""The agreed layout: imports point one way; only serve/ imports FastAPI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["taxonomy", "retrieval", "prompts", "agent", "serve", "evals"]
# what each package may import of ours (taxonomy <- retrieval <- prompts <- agent <- serve)
ALLOWED = {
    "taxonomy": set(),
    "retrieval": {"taxonomy"},
    "prompts": {"taxonomy", "retrieval"},
    "agent": {"taxonomy", "retrieval", "prompts"},
    "serve": {"taxonomy", "retrieval", "prompts", "agent", "evals"},
    "evals": {"taxonomy", "retrieval", "prompts", "agent"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_exists(package: str) -> None:
    assert (REPO / package / "__init__.py").is_file()


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    violations = []
    for path in sorted((REPO / package).rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                violations.append(f"{path.relative_to(REPO)} imports {module}")
            if top in {"fastapi", "starlette"} and package != "serve":
                violations.append(f"{path.relative_to(REPO)} imports {module} (only serve/ may)")
    assert not violations, "\n".join(violations)
