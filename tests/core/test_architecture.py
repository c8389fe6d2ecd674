"""The package's shape: the core stands alone, imports point one way, the wheel holds code only, old models load."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import glot_st

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "glot_st"
FIXTURES = REPO / "tests" / "fixtures"
LEGACY = FIXTURES / "legacy_glot_v0_1"

# Layers, lowest first: a module may import its own layer and the layers below it, never one above.
LAYERS = {"core": 0, "train": 1, "bench": 2, "cli": 3}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("train", "bench", "cli"):
        return parts[1]
    return "core"


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_imports() -> dict[str, list[tuple[str, list[str], int]]]:
    """For every module of the package: (imported glot_st module, imported names, line) for each import."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        rows = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                rows += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("glot_st")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("glot_st"):
                names = [alias.name for alias in node.names]
                # `from glot_st.train import cache` imports the submodule glot_st.train.cache
                submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
                rows.append((node.module, [n for n in names if f"{node.module}.{n}" not in modules], node.lineno))
                rows += [(sub, [], node.lineno) for sub in submodules]
            elif isinstance(node, ast.ImportFrom) and node.level:
                pytest.fail(f"{name}:{node.lineno} uses a relative import")
        found[name] = rows
    return found


def test_imports_point_one_way():
    violations = []
    for module, rows in package_imports().items():
        for target, _, line in rows:
            if LAYERS[layer_of(target)] > LAYERS[layer_of(module)]:
                violations.append(f"{module}:{line} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert not violations, "\n".join(violations)


def test_no_module_imports_private_names_of_another():
    violations = []
    for module, rows in package_imports().items():
        for target, names, line in rows:
            if target == "glot_st._compat":  # the one shim module, private by name so users do not import it
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") and part != "__init__" for part in target.split(".")):
                violations.append(f"{module}:{line} imports {private or target} from {target}")
    assert not violations, "\n".join(violations)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a list of nodes, or None (iterative depth-first search)."""
    state: dict[str, int] = {}
    for root in graph:
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_no_import_cycle_inside_the_package():
    imports = package_imports()
    graph = {m: {t for t, _, _ in rows if t in imports and t != m} for m, rows in imports.items()}
    # A package's __init__ re-exporting its submodules is not a cycle with them: drop parent edges.
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


KIT = ("glot_st.train", "glot_st.bench", "glot_st.cli")


@pytest.mark.slow
def test_core_import_and_loading_leave_the_training_kit_and_bench_unimported():
    script = f"""
import sys, json
import glot_st
after_import = sorted(m for m in sys.modules if m.startswith({KIT!r}))
model = glot_st.load({str(LEGACY)!r})
model.encode(["a test sentence"])
after_load = sorted(m for m in sys.modules if m.startswith({KIT!r}))
print(json.dumps([after_import, after_load, sorted(m for m in sys.modules if m.startswith("glot_st"))]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    after_import, after_load, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "glot_st.module" in loaded  # the probe sees the package's modules
    assert after_import == []
    assert after_load == []


def test_models_saved_before_the_move_load_with_the_same_embeddings():
    modules = json.loads((LEGACY / "modules.json").read_text())
    assert modules[1]["type"] == "glot_st.module.GLOT"  # the class path written before the split
    texts = json.loads((FIXTURES / "legacy_glot_v0_1_texts.json").read_text())
    expected = np.load(FIXTURES / "legacy_glot_v0_1_embeddings.npy")
    model = glot_st.load(str(LEGACY))
    got = model.encode(texts, convert_to_numpy=True)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_adapool_is_a_sentence_transformers_module_that_saves_and_loads(tmp_path):
    from sentence_transformers import SentenceTransformer

    from glot_st._compat import Transformer

    from tiny_backbones import save_tiny_backbone

    backbone = save_tiny_backbone(tmp_path / "backbone", "bert")
    torch.manual_seed(0)
    pool = glot_st.AdaPool(32)
    with torch.no_grad():
        for parameter in pool.parameters():
            parameter.normal_(0, 0.5)
    model = SentenceTransformer(modules=[Transformer(backbone), pool])
    texts = ["a man plays a guitar .", "not very good"]
    before = model.encode(texts, convert_to_tensor=True)
    model.save(str(tmp_path / "saved"))
    config = json.loads((tmp_path / "saved" / "1_AdaPool" / "adapool_config.json").read_text())
    assert config == {"in_dim": 32, "scorer_hidden": 128}
    reloaded = SentenceTransformer(str(tmp_path / "saved"), trust_remote_code=True)
    assert isinstance(reloaded[1], glot_st.AdaPool)
    torch.testing.assert_close(reloaded.encode(texts, convert_to_tensor=True), before, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_wheel_holds_code_only_and_builds_without_warnings(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "would be ignored" not in log
    (wheel,) = tmp_path.glob("glot_st-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    package_files = [n for n in names if not n.startswith("glot_st-")]
    assert "glot_st/module.py" in package_files and "glot_st/train/cache/store.py" in package_files
    data = [n for n in package_files if not n.endswith(".py") and n != "glot_st/py.typed"]
    assert data == [], data


MAX_BODY_LINES = 60


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body after its docstring (nested functions count towards it)."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
        body[0].value.value, str
    ):
        body = body[1:]
    return function.end_lineno - body[0].lineno + 1 if body else 0


def long_functions(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(node) > limit:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({body_lines(node)} lines)")
    return found


def test_no_function_body_in_the_package_is_over_60_lines():
    assert long_functions(PACKAGE, MAX_BODY_LINES) == [], "split these functions into named steps"


def test_the_length_check_finds_long_functions(tmp_path):
    statements = "\n".join(f"    x{i} = {i}" for i in range(MAX_BODY_LINES + 1))
    (tmp_path / "probe.py").write_text(f'def long():\n    """Doc."""\n{statements}\n\n\ndef short():\n    return 1\n')
    assert [line.split()[1] for line in long_functions(tmp_path, MAX_BODY_LINES)] == ["long"]
    assert long_functions(tmp_path, MAX_BODY_LINES + 1) == []
