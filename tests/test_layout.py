"""The package's layout: the rooms of cil/ and what may import what (docs/architecture.md), an import graph
without cycles, methods installed as cil.strategies."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"cil": ROOT / "cil", "cil.strategies": ROOT / "strategies"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def import_graph(include_lazy: bool) -> dict[str, set[str]]:
    """Module -> cil modules it imports (module level, TYPE_CHECKING blocks included; function bodies if lazy)."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        nodes = ast.walk(tree) if include_lazy else _module_level(tree)
        targets = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for c in candidates:
                if c in mods and c != name:
                    targets.add(c)
                    break
        graph[name] = targets
    return graph


def _module_level(tree):
    for node in tree.body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            yield from ast.walk(node)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_import_graph_has_no_cycle():
    """No cycle, counting the imports inside functions too (a lazy import is still a dependency)."""
    for lazy in (False, True):
        graph = import_graph(include_lazy=lazy)
        assert len(graph) > 40
        assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_imports_the_methods_by_name():
    """Only the entry point names cil.strategies; the engine, registry and runner know no method.

    cil.avalanche is the exception by design: it offers named methods' equations to Avalanche users.
    """
    for name, targets in import_graph(include_lazy=True).items():
        if not name.startswith(("cil.strategies", "cil.avalanche")):
            assert not any(t.startswith("cil.strategies") for t in targets), name


def test_methods_install_inside_the_package():
    import cil.strategies

    assert Path(cil.strategies.__file__).resolve().parent == ROOT / "strategies"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"cil.strategies" = "strategies"' in pyproject and 'builtin = "cil.strategies"' in pyproject


def documented_layers() -> list[tuple[str, ...]]:
    """The rooms from the bottom up, read from docs/architecture.md's layer table (so the docs cannot drift):
    ``| 0 | `cil` (its version), `errors`, ... |`` -> ("cil", "cil.errors", ...)."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", text, flags=re.MULTILINE)
    layers = []
    for number, cell in rows:
        assert int(number) == len(layers), f"layer {number} out of order in docs/architecture.md"
        names = re.findall(r"`([a-z_]+)`", cell)
        layers.append(tuple(name if name == "cil" else f"cil.{name}" for name in names))
    return layers


LAYERS = documented_layers()
"""The rooms from the bottom up (docs/architecture.md): a module imports only from its own layer or the ones below."""


def room(module: str) -> tuple[int, str] | None:
    """(layer, room) of a module: the room it is, or the longest room it lies inside (the package ``cil`` itself
    is a room of its own, not a prefix of every module); None when no room holds it."""
    found = [
        (i, r)
        for i, rooms in enumerate(LAYERS)
        for r in rooms
        if module == r or (r != "cil" and module.startswith(r + "."))
    ]
    return max(found, key=lambda item: len(item[1])) if found else None


def test_every_module_is_placed_in_a_documented_room():
    """A new top-level module (as cil/processes.py once was) must be placed in docs/architecture.md's table."""
    assert len(LAYERS) >= 5 and all(LAYERS), "docs/architecture.md's layer table was not read"
    unplaced = [m for m in modules() if room(m) is None]
    assert unplaced == [], f"modules in no room of docs/architecture.md's layer table: {unplaced}"


def test_imports_point_down_the_layers():
    """Counting imports inside functions too: the training core never imports a run, a sweep or a method; the
    methods never import the runs; nothing below the CLI imports it."""
    upward = [
        f"{a} -> {b}"
        for a, targets in import_graph(include_lazy=True).items()
        for b in targets
        if room(a) is not None and room(b) is not None and room(b)[0] > room(a)[0]  # type: ignore[index]
    ]
    assert upward == []
