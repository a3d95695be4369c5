"""The import graph of pjrt_tt follows the road of docs/architecture.md.

Every module's imports of pjrt_tt modules are read with `ast` (function-local imports
included, relative imports resolved) and checked for
(a) no import cycles, except through the simulator's ttnn-shaped tensor / op pair, and
(b) no arrow running up the layer table below: a module imports its own layer, or one
    of the layers its layer lists.
"""
from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pjrt_tt"

# Layer -> modules, each with its submodules ("pjrt_tt" itself: only the package's __init__).
LAYERS = {
    "plugins": ("pjrt_tt.jax_plugin", "pjrt_tt.torch"),
    "runtime": ("pjrt_tt.runtime",),
    "compiler": ("pjrt_tt.compiler",),
    "spmd": ("pjrt_tt.spmd",),
    "lower": ("pjrt_tt.lower",),
    "passes": ("pjrt_tt.passes",),
    "ingest": ("pjrt_tt.ingest",),
    "targets": ("pjrt_tt.targets",),
    "perf": ("pjrt_tt.perf",),
    "base": ("pjrt_tt", "pjrt_tt.program", "pjrt_tt.compile_context", "pjrt_tt.dtypes",
             "pjrt_tt.ttnn_facts", "pjrt_tt.errors", "pjrt_tt.systems", "pjrt_tt.settings",
             "pjrt_tt.host_callbacks"),
}
# Layer -> the layers below it that it may import. The compile side (compiler, spmd, lower,
# passes, ingest) never sees a target; targets see only the program and the facts; the
# runtime is the one place where the two sides meet.
MAY_IMPORT = {
    "plugins": {"runtime", "base"},
    "runtime": {"compiler", "ingest", "targets", "perf", "base"},   # ingest: compile options
    "compiler": {"spmd", "lower", "passes", "ingest", "base"},
    "spmd": {"lower", "ingest", "base"},
    "lower": {"ingest", "base"},
    "passes": {"base"},
    "ingest": {"base"},
    "targets": {"base"},
    "perf": {"base"},     # the device-time estimator: the optimizer's passes will read it
    "base": set(),
}
# The one back edge by design: the simulator's Tensor calls its ops (ttnn's own shape:
# methods of ttnn.Tensor such as to_layout / reshape are ttnn ops, which make Tensors).
# Without it the graph has no cycle.
ALLOWED_BACK_EDGES = {("pjrt_tt.targets.sim.tensor", "pjrt_tt.targets.sim.ops")}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the pjrt_tt modules it imports anywhere in its body."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] == "pjrt_tt")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] != "pjrt_tt":
                    continue
                for a in node.names:   # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{a.name}"
                    out.add(sub if sub in mods else base)
        graph[name] = {m for m in out if m != name}
    return graph


def layer_of(module: str) -> str | None:
    for layer, prefixes in LAYERS.items():
        if any(module == p or (p != "pjrt_tt" and module.startswith(p + ".")) for p in prefixes):
            return layer
    return None


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_graph_is_read():
    graph = import_graph()
    assert "pjrt_tt.lower.registry" in graph["pjrt_tt.lower.elementwise"]
    assert "pjrt_tt.compiler" in graph["pjrt_tt.runtime.client"]
    assert "pjrt_tt.targets.sim.tensor" in graph["pjrt_tt.targets.sim.ops"]   # a relative import


def test_every_module_has_a_layer_and_the_table_is_layered():
    for module in import_graph():
        assert layer_of(module) in MAY_IMPORT, f"{module} has no layer: add it to LAYERS"
    layer_graph = {layer: set(below) for layer, below in MAY_IMPORT.items()}
    assert cycles(layer_graph) == [] and all(layer not in below for layer, below in layer_graph.items())


def test_no_import_cycles():
    graph = import_graph()
    for a, b in ALLOWED_BACK_EDGES:
        graph[a].discard(b)
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_no_arrow_runs_up_a_layer():
    upward = []
    for module, imports in sorted(import_graph().items()):
        src = layer_of(module)
        for imported in sorted(imports):
            dst = layer_of(imported)
            if dst != src and dst not in MAY_IMPORT[src]:
                upward.append(f"{module} ({src}) -> {imported} ({dst})")
    assert not upward, "imports against the layer table:\n" + "\n".join(upward)


def test_lowering_families_import_only_the_registry_helpers_and_builder():
    """A rule family imports registry.py, builder.py, helpers.py and matmul.py (the matrix
    products dots and convolutions share; and, from ingest, bodies.py: region bodies named
    by what they compute), never another family."""
    shared = {"pjrt_tt.lower", "pjrt_tt.lower.registry", "pjrt_tt.lower.builder", "pjrt_tt.lower.helpers",
              "pjrt_tt.lower.matmul"}
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith("pjrt_tt.lower.") and module not in shared or module.startswith("pjrt_tt.spmd"):
            families = {m for m in imports if m.startswith("pjrt_tt.lower") and m not in shared}
            assert not families, f"{module} imports the rule families {sorted(families)}"
    assert graph["pjrt_tt.lower.registry"] == set(), "registry.py holds only the tables"
