"""voicebridge's imports: no cycle, and dependencies point one way (commands → core).

Read from the source with ``ast``, so an import inside a function or under ``TYPE_CHECKING``
counts as much as one at the top: a cycle there is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import voicebridge

PACKAGE = Path(voicebridge.__file__).parent

# The rooms, lowest first. A module may import its own room and the rooms its room names.
BASE = "base"  # errors and logs: leaves everything may use
CORE = "core"  # sans-I/O: no settings, no sockets
SETTINGS = "settings"  # config: validated with the core's vocabulary
SHELL = "shell"  # the asyncio server
PEERS = "peers"  # the other side of each socket, and the load tool built on it
COMMANDS = "commands"  # what `voicebridge <command>` runs: composes all of the above
MAY_IMPORT = {
    BASE: {BASE},
    CORE: {CORE, BASE},
    SETTINGS: {SETTINGS, CORE, BASE},
    SHELL: {SHELL, SETTINGS, CORE, BASE},
    PEERS: {PEERS, SETTINGS, CORE, BASE},
    COMMANDS: {COMMANDS, SHELL, PEERS, SETTINGS, CORE, BASE},
}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "command" or parts[1:2] in (
        ["cli"],
        ["__main__"],
        ["serve"],
        ["demo"],
        ["startup"],
        ["doctor"],
    ):
        return COMMANDS
    top = parts[1] if len(parts) > 1 else ""
    if top == "core":
        return CORE
    if top == "server":
        return SHELL
    if top in ("fake_realtime", "twilio_sim", "replay", "business_sim"):
        return PEERS
    if top in ("config", "config_fields", "config_checks"):
        return SETTINGS
    return BASE


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["voicebridge", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The voicebridge modules ``module`` imports (a name imported from a package counts as
    the submodule when there is one, else as the package)."""

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(resolve(f"{base}.{alias.name}") for alias in node.names)
    return {m for m in found if m is not None and m != module}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
    return found


def test_the_helpers_see_a_cycle() -> None:
    """The cycle finder finds a three-module loop and ignores a diamond."""
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(loop) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []


def test_the_graph_sees_imports_inside_functions() -> None:
    """The graph has the modules and their imports, lazy ones included."""
    edges = graph()
    assert "voicebridge.core.call" in edges and "voicebridge.cli" in edges
    assert "voicebridge.replay.command" in edges["voicebridge.cli"]


def test_no_import_cycle() -> None:
    """No two voicebridge modules import each other, directly or through others."""
    edges = graph()
    found = cycles(edges)
    # Each cycle with its imports; one of them must go (a shared type moves to a lower module).
    detail = [sorted(f"{m} -> {d}" for m in c for d in edges[m] if d in c) for c in found]
    assert found == [], detail


def test_dependencies_point_one_way() -> None:
    """Commands use the shell and the peers; those use the core; the core uses neither."""
    wrong = []
    for module, deps in sorted(graph().items()):
        allowed = MAY_IMPORT[room(module)]
        for dep in sorted(deps):
            if room(dep) not in allowed:
                wrong.append(f"{module} ({room(module)}) imports {dep} ({room(dep)})")
    assert wrong == []
