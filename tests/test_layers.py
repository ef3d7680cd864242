"""The package's layers, bottom to top, read from the source: a module imports only from its own
layer or those below it (lazy imports inside functions included), the lower layers stay free
of the frameworks above them, and no two modules import each other, directly or round a loop.

Ray code is two layers: what runs inside Ray's actors (a Tune trial, a Ray Train worker: it
trains, so it pulls torch) and what runs in the driver (searcher, callbacks, cluster). The
driver reaches into actor code only where it hands it to Ray (`SUBMITS`)."""

import ast
from pathlib import Path

import pytest

from .helpers import REPO

pytestmark = pytest.mark.unit

LAYERS = {
    "schema": {"errors", "files", "spec", "hardware", "family", "config", "plan"},
    "science": {"collapse", "decision", "law", "mixing", "knowledge", "analysis"},
    "training": {"corpus", "tokens", "data", "model", "parallel", "checkpoint", "metrics",
                 "train", "trial", "provenance", "base_store", "probe", "pretrained"},
    "io": {"tracking", "records", "output", "presentation"},
    "in-actor": {"ray_trial", "live_metrics"},
    "driver": {"search", "decision_search", "progress", "cluster", "mlflow_mirror", "console",
               "tune_experiment", "tokenize_job", "wikidata"},
    "top": {"sweep", "replay", "plots", "report", "cli", "__init__"},
}  # fmt: skip
# Driver modules that import in-actor code, and why: the trainable Tune runs; the live-metrics
# gauges an ended trial is cleared from.
SUBMITS = {"tune_experiment": {"ray_trial"}, "mlflow_mirror": {"live_metrics"}}
ORDER = list(LAYERS)
# Frameworks a layer must not import (nor, so, pull into whoever imports it).
BANNED = {
    "schema": {"torch", "transformers", "ray", "mlflow"},
    "science": {"torch", "transformers", "ray", "mlflow"},
    "training": {"ray", "mlflow"},
    "io": {"torch", "transformers", "ray"},
    "driver": {"torch", "transformers"},
}
PACKAGE = REPO / "kinfuse_ray"


def layer_of(module: str) -> str:
    """A module's layer; a subpackage's modules (law.fit) are in their package's."""
    package = module.split(".")[0]
    return next(name for name, members in LAYERS.items() if package in members)


def module_name(path: Path) -> str:
    """kinfuse_ray/law/fit.py -> law.fit; kinfuse_ray/law/__init__.py -> law."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(kinfuse_ray modules, other top-level packages) that `path` imports anywhere in it."""
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "kinfuse_ray":  # from kinfuse_ray import checkpoint (not __version__)
                names = [f"kinfuse_ray.{a.name}" for a in node.names if not a.name.startswith("__")]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("kinfuse_ray."):
                parts = name.split(".")[1:]
                package = (PACKAGE / parts[0]).is_dir() and len(parts) > 1
                ours.add(".".join(parts[:2]) if package else parts[0])
            else:
                theirs.add(name.split(".")[0])
    return ours, theirs


PATHS = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {module: imports(path) for module, path in PATHS.items()}


def test_every_module_has_a_layer():
    assert {module.split(".")[0] for module in GRAPH} == set().union(*LAYERS.values())
    assert {"law", "law.fit", "law.forecast"} <= set(GRAPH)  # subpackages are read too


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_from_a_layer_above_it(module):
    ours, theirs = GRAPH[module]
    mine = ORDER.index(layer_of(module))
    upward = sorted(m for m in ours if ORDER.index(layer_of(m)) > mine)
    assert not upward, f"{module} ({layer_of(module)}) imports {upward} from above"
    frameworks = sorted(theirs & BANNED.get(layer_of(module), set()))
    assert not frameworks, f"{module} ({layer_of(module)}) imports {frameworks}"


@pytest.mark.parametrize("module", sorted(LAYERS["driver"] | LAYERS["top"]))
def test_the_driver_reaches_into_actor_code_only_to_submit_it(module):
    reached = {m.split(".")[0] for m in GRAPH[module][0]} & LAYERS["in-actor"]
    assert reached <= SUBMITS.get(module, set()), f"{module} imports in-actor {sorted(reached)}"


def takes_the_whole_sweep(path: Path) -> list[str]:
    """Functions in `path` with a parameter typed `SweepConfig` (or a list of them) or named
    `sweep`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                annotation = ast.unparse(arg.annotation) if arg.annotation else ""
                if "SweepConfig" in annotation or arg.arg == "sweep":
                    found.append(f"{path.stem}.{node.name}({arg.arg})")
    return found


@pytest.mark.parametrize("module", sorted(GRAPH.keys() - LAYERS["top"] - {"config"}))
def test_below_the_top_no_function_takes_the_whole_sweep(module):
    """Each layer receives the sections it uses (a `Rung`, `TrainConfig`, an output folder),
    never the whole sweep configuration; `config` itself projects them."""
    assert takes_the_whole_sweep(PATHS[module]) == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop in `graph` (module -> modules it imports), or None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph.get(module, set()) - {module}):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle({module: ours for module, (ours, _) in GRAPH.items()})
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_checks_can_fail(tmp_path):
    """On a planted lazy upward import and a planted loop, the checks above do fail."""
    (tmp_path / "low.py").write_text("def f():\n    from kinfuse_ray.sweep import run_sweep\n")
    (tmp_path / "pkg.py").write_text("from kinfuse_ray import low\nimport torch.nn\n")
    assert imports(tmp_path / "low.py")[0] == {"sweep"}
    assert imports(tmp_path / "pkg.py") == ({"low"}, {"torch"})
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    (tmp_path / "wide.py").write_text("def f(x, *, cfg: 'SweepConfig'):\n    pass\n")
    assert takes_the_whole_sweep(tmp_path / "wide.py") == ["wide.f(cfg)"]
