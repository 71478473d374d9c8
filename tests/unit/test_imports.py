"""The house's one rule: imports go one way, down the layers, and never round in a circle.

A lower layer that reaches up (``rules`` reading the whole ``Config``, a stage the rules call) cannot be tested,
reused or understood without everything above it, and a cycle hidden in a function-level import works only as
long as nobody moves that import. The imports are read from the source, not from ``sys.modules``: every
``import`` and ``from … import`` of ``ticketd`` anywhere in a module (inside functions and ``TYPE_CHECKING``
blocks too), so a lazy import cannot hide an edge. Parent packages that Python runs implicitly are not edges;
naming a package (``from ticketd.daemon.config import Config``) is an edge to its ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("parsers", "storage", "rules", "mailtemplates", "daemon")
SKIPPED = ("storage/migrations",)  # alembic's scripts: loaded by alembic from files, never imported

# Lowest first: a module may import its own layer and those before it, never one after it. The daemon's rooms
# (and its two front doors, which are single modules) are layers of their own.
LAYERS = (
    "ticketd.parsers",
    "ticketd.storage",
    "ticketd.rules",
    "ticketd.mailtemplates",
    "ticketd.daemon.config",
    "ticketd.daemon.service",
    "ticketd.daemon.outgoing",
    "ticketd.daemon.reports",
    "ticketd.daemon.stages",
    "ticketd.daemon.pipeline",
    "ticketd.daemon.intake",
    "ticketd.daemon.runner",
    "ticketd.daemon.cli",
    "ticketd.daemon",  # the package's own __init__: the front page, imported by nothing
)

Graph = Mapping[str, frozenset[str]]


# --- reading the source ---------------------------------------------------------------------------------------

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["ticketd", *parts])


def product_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not any(relative.startswith(skip + "/") for skip in SKIPPED):
                found[module_name(path)] = path
    return found


def imported_names(path: Path, module: str) -> Iterable[str]:
    """Every name a file's import statements mention, anywhere in it; ``from x import y`` as ``x.y``, which
    ``resolve`` reads as the module ``x.y`` when there is one, else as ``x``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield from (f"{base}.{alias.name}" if base else alias.name for alias in node.names)


def resolve(name: str, known: Iterable[str]) -> str | None:
    """The module an import names: ``ticketd.x.y`` when that is a module, else its longest known prefix."""
    modules = set(known)
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> tuple[dict[str, frozenset[str]], list[str]]:
    """Module → the ticketd modules it imports; and the imports that name no module of ours."""
    modules = product_modules()
    graph: dict[str, frozenset[str]] = {}
    unknown: list[str] = []
    for module, path in modules.items():
        edges: set[str] = set()
        for name in imported_names(path, module):
            if name != "ticketd" and not name.startswith("ticketd."):
                continue
            target = resolve(name, modules)
            if target is None or target == "ticketd":
                unknown.append(f"{module} imports {name}, which is not a module of the product")
            elif target != module:
                edges.add(target)
        graph[module] = frozenset(edges)
    return graph, unknown


# --- the checks (pure, so the self-test can feed them a made-up graph) ----------------------------------------

def layer_of(module: str) -> int | None:
    """The index in LAYERS of the longest layer name that is the module or a package above it."""
    best: int | None = None
    for index, name in enumerate(LAYERS):
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(LAYERS[best])):
            best = index
    return best


def wrong_way(graph: Graph) -> list[str]:
    problems = []
    for importer in sorted(graph):
        low = layer_of(importer)
        if low is None:
            problems.append(f"{importer} belongs to no layer: add its package to LAYERS in the right place")
            continue
        for imported in sorted(graph[importer]):
            high = layer_of(imported)
            if high is not None and high > low:
                problems.append(f"{importer} imports {imported}: {LAYERS[low]} may import only "
                                f"{', '.join(LAYERS[:low + 1])}, not {LAYERS[high]}, which comes after it")
    return problems


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (or a module importing itself),
    as the modules in import order with the first repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graphs are a few hundred modules, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_one_cycle(graph, component) for component in components)


def _one_cycle(graph: Graph, component: set[str]) -> list[str]:
    """A shortest way round from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    return [*paths[node], start]
                if nxt in component and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected component


# --- the tests ------------------------------------------------------------------------------------------------

def test_the_walk_finds_the_product() -> None:
    """If the walk read nothing (a moved folder), every other test here would pass on an empty graph."""
    graph, _ = import_graph()
    assert {"ticketd.rules.states", "ticketd.daemon.config", "ticketd.daemon.pipeline",
            "ticketd.daemon.cli.main", "ticketd.parsers.message", "ticketd.storage.models"} <= set(graph)
    assert not any(name.startswith("ticketd.storage.migrations") for name in graph)
    assert sum(len(edges) for edges in graph.values()) > 100


def test_every_import_names_a_module_of_ours() -> None:
    _, unknown = import_graph()
    assert unknown == []


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    found = [" → ".join(cycle) for cycle in cycles(graph)]
    assert found == [], "import cycles:\n" + "\n".join(found)


def test_imports_go_down_the_layers_only() -> None:
    graph, _ = import_graph()
    problems = wrong_way(graph)
    assert problems == [], "wrong-way imports:\n" + "\n".join(problems)


def test_the_checks_catch_a_cycle_and_a_wrong_way_import() -> None:
    """The checker itself, on a made-up graph: a test that cannot fail proves nothing."""
    graph = {
        "ticketd.rules.a": frozenset({"ticketd.rules.b", "ticketd.parsers.x"}),
        "ticketd.rules.b": frozenset({"ticketd.rules.c"}),
        "ticketd.rules.c": frozenset({"ticketd.rules.a", "ticketd.daemon.config"}),
        "ticketd.daemon.config": frozenset({"ticketd.daemon.config.sla"}),
        "ticketd.daemon.config.sla": frozenset({"ticketd.daemon.config"}),
        "ticketd.parsers.x": frozenset({"ticketd.parsers.x"}),
        "ticketd.daemon.cli.main": frozenset({"ticketd.daemon.runner", "ticketd.rules.a"}),
        "ticketd.elsewhere": frozenset(),
    }
    assert cycles(graph) == [
        ["ticketd.daemon.config", "ticketd.daemon.config.sla", "ticketd.daemon.config"],
        ["ticketd.parsers.x", "ticketd.parsers.x"],
        ["ticketd.rules.a", "ticketd.rules.b", "ticketd.rules.c", "ticketd.rules.a"],
    ]
    problems = wrong_way(graph)
    assert problems == [
        "ticketd.elsewhere belongs to no layer: add its package to LAYERS in the right place",
        "ticketd.rules.c imports ticketd.daemon.config: ticketd.rules may import only ticketd.parsers, "
        "ticketd.storage, ticketd.rules, not ticketd.daemon.config, which comes after it",
    ]
    assert cycles({"ticketd.rules.a": frozenset({"ticketd.parsers.x"}), "ticketd.parsers.x": frozenset()}) == []


@pytest.mark.parametrize(("module", "layer"), [
    ("ticketd.daemon.pipeline", "ticketd.daemon.pipeline"),
    ("ticketd.daemon.config.sla", "ticketd.daemon.config"),
    ("ticketd.daemon", "ticketd.daemon"),
    ("ticketd.rules", "ticketd.rules"),
    ("ticketd.rulesets", None),
])
def test_layer_of(module: str, layer: str | None) -> None:
    found = layer_of(module)
    assert (LAYERS[found] if found is not None else None) == layer


def test_resolving_names() -> None:
    known = ["ticketd.daemon.config", "ticketd.daemon.config.sla", "ticketd.daemon.stages"]
    assert resolve("ticketd.daemon.config.Config", known) == "ticketd.daemon.config"
    assert resolve("ticketd.daemon.config.sla", known) == "ticketd.daemon.config.sla"
    assert resolve("ticketd.daemon.stages.sla_clock", known) == "ticketd.daemon.stages"
    assert resolve("ticketd.nothing", known) is None
