"""The dependency rule of DESIGN.md, read from the source: no cycle between packages, no arrow pointing up a layer."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import bot

ROOT = Path(bot.__file__).parent

# Lowest first. A module may import its own layer's and lower layers' modules, never a higher layer's.
LAYERS: list[set[str]] = [
    {"models", "errors"},
    # the pure core, and the settings every layer reads
    {"sessions", "formatting", "commands", "sms_text", "phones", "links", "config", "tasks", "backoff", "address"}
    | {"graph_ids", "readiness", "peers", "store_url"},
    # the ports and their implementations, the registry of meetings, the counters, the error envelope
    {"store", "acs", "calls", "metrics", "meetings", "inflight", "refusal"},
    {"relay"},
    # the doors
    {"channels", "admin"},
    # the wiring and the command line
    {
        "app",
        "server",
        "drain",
        "unavailable",
        "embedded",
        "demo",
        "tools",
        "admin_commands",
        "doctor",
        "cli",
        "__main__",
    },
]
# The sandbox stands alone: it imports nothing of the bridge, and only these modules start it.
SANDBOX = "sandbox"
MAY_START_SANDBOX = {"cli", "embedded"}


def _unit(module: str) -> str:
    """A top-level module or package of bot: bot.relay.presence -> relay."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    """Each bot module's imports of other bot modules, TYPE_CHECKING ones included."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        parts = ["bot", *path.relative_to(ROOT).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        module = ".".join(parts)
        package = parts if is_package else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                names = [f"{target}.{alias.name}" for alias in node.names] if node.module is None else [target]
                graph[module].update(n for n in names if n.startswith("bot."))
            elif isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name.startswith("bot."))
    return graph


def _package_arrows() -> dict[str, set[str]]:
    arrows: dict[str, set[str]] = defaultdict(set)
    for source, targets in _imports().items():
        for target in targets:
            a, b = _unit(source), _unit(target)
            if a and b and a != b:
                arrows[a].add(b)
    return arrows


def _layer(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"bot/{unit} is in no layer of the dependency rule: add it to LAYERS in {__file__}")


def test_every_module_of_the_bridge_has_a_layer() -> None:
    units = (
        {_unit(m) for m in _imports()}
        | {p.stem for p in ROOT.glob("*.py")}
        | {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    )
    for unit in units - {"", "__init__", SANDBOX}:
        _layer(unit)


def test_no_arrow_points_to_a_higher_layer() -> None:
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in _package_arrows().items()
        if a != SANDBOX
        for b in targets
        if b != SANDBOX and _layer(b) > _layer(a)
    ]
    assert not upward, upward


def test_the_sandbox_imports_nothing_of_the_bridge_and_only_the_command_line_starts_it() -> None:
    arrows = _package_arrows()
    assert arrows.get(SANDBOX, set()) == set()
    starters = {a for a, targets in arrows.items() if SANDBOX in targets}
    assert starters <= MAY_START_SANDBOX, starters


def test_no_cycle_between_packages() -> None:
    arrows = _package_arrows()
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    cycles: list[list[str]] = []

    def walk(unit: str, path: list[str]) -> None:
        state[unit] = 1
        for nxt in sorted(arrows.get(unit, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[unit] = 2

    for unit in sorted(arrows):
        if unit not in state:
            walk(unit, [unit])
    assert not cycles, cycles
