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


# ---- inside serve/: no import cycles, and the API never imports the wiring -----------------
WIRING = {"serve.state", "serve.app"}  # build the services, so they import serve/api


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def serve_import_graph() -> dict[str, set[str]]:
    """Module -> the serve modules it imports (anywhere in the file, lazily too)."""
    paths = {_module_name(p): p for p in sorted((REPO / "serve").rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from serve import tagging_state` imports a module; `from serve.x import f`, x
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in paths and t != name)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_serve_graph_is_built_from_the_imports() -> None:
    graph = serve_import_graph()
    assert "serve.api.context" in graph["serve.state"]
    assert "serve.api.tags.service" in graph["serve.api.context"]
    assert "serve.batcher" in graph["serve.api.tags.service"]


def test_no_import_cycles_among_serve_modules() -> None:
    cycle = _cycle(serve_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycles_through_the_api_package() -> None:
    """With serve/api taken as one node: the API and the modules around it (batcher, tagging
    state, LLM health, jobs, the wiring) depend one way."""
    collapsed: dict[str, set[str]] = {}
    for module, edges in serve_import_graph().items():
        name = "serve.api" if module.startswith("serve.api") else module
        targets = {"serve.api" if t.startswith("serve.api") else t for t in edges}
        collapsed.setdefault(name, set()).update(targets - {name})
    cycle = _cycle(collapsed)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_api_never_imports_the_wiring() -> None:
    """serve/state.py (and serve/app.py) build the API's services: if anything in serve/api
    imported them, directly or through other modules, the two would depend on each other."""
    graph = serve_import_graph()
    violations = [
        f"{module} reaches {', '.join(sorted(_reachable(graph, module) & WIRING))}"
        for module in sorted(graph)
        if module.startswith("serve.api") and _reachable(graph, module) & WIRING
    ]
    assert not violations, "\n".join(violations)


#: what the Python client must not load (it runs inside catalog systems): the server's stack and the models
CLIENT_FORBIDDEN = ("fastapi", "starlette", "uvicorn", "torch", "sentence_transformers", "transformers", "faiss", "llama_cpp")


def test_the_client_and_the_protocol_modules_import_no_server_or_model_stack() -> None:
    """serve/client and every serve module it reaches (the protocol modules) import neither
    FastAPI nor the models (the process tier also checks sys.modules after a real import)."""
    graph = serve_import_graph()
    paths = {_module_name(p): p for p in (REPO / "serve").rglob("*.py")}
    client = {m for m in graph if m == "serve.client" or m.startswith("serve.client.")} - {"serve.client.langchain"}
    reached = client | {r for m in client for r in _reachable(graph, m)}
    violations = [
        f"{module} imports {imported}"
        for module in sorted(reached)
        for imported in imported_modules(paths[module])
        if imported.split(".")[0] in CLIENT_FORBIDDEN
    ]
    assert "serve.api.tags.protocol" in reached and not violations, "\n".join(violations)
