"""Hub-native GLOT models: ``glot_modeling.py`` generated from the package, loaded where glot-st is not installed.

The no-glot-st loads run in a subprocess started with ``python -I`` (no PYTHONPATH, no current directory on
``sys.path``) from a temporary directory, with a ``sys.meta_path`` finder that refuses ``glot_st`` (the package is
installed in the environment): only sentence-transformers' own mechanism (transformers'
``get_class_from_dynamic_module``) can make the GLOT class, from the model's ``glot_modeling.py``.
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_hub import place_in_hf_cache

import glot_st
from glot_st import GLOT, AdaPool
from glot_st.graph import build_token_graph
from glot_st.hub import BUNDLED_SOURCES, PACKAGE_DIR, modeling_source

from tiny_backbones import save_tiny_backbone

pytestmark = pytest.mark.slow  # see setup.cfg: run by `make test`, skipped by -m 'not slow'

TEXTS = ["a man plays the guitar .", "the dog runs in the park", "it is sunny outside today", "nice"]
SHA = "89abcdef0123456789abcdef0123456789abcdef"
CONFIGS = {
    "default": {},
    "sage-max-topk": dict(conv="sage", jk="max", graph="topk", k=3, edge_weight="cosine", hidden_dim=12, tau=0.3),
    "gat-learned-edge-term": dict(graph="learned", gat_edge_term=True, hidden_dim=12, tau=0.3, learned_floor=-0.5),
}

NO_GLOT_SCRIPT = r"""
import importlib.abc, json, os, sys
import numpy as np

class RefuseGlotSt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "glot_st" or name.startswith("glot_st."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, RefuseGlotSt())
try:
    import glot_st  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("glot_st is importable: the test would prove nothing")

from sentence_transformers import SentenceTransformer

request = json.loads(sys.argv[1])
report = {}
for name, source in request["sources"].items():
    model = SentenceTransformer(source, trust_remote_code=True, device="cpu", **request.get("kwargs", {}))
    glot = model[1]
    np.save(os.path.join(request["out"], name + ".npy"), model.encode(request["texts"], convert_to_numpy=True))
    report[name] = {
        "class_module": type(glot).__module__,
        "config": glot.get_config_dict(),
        "backbone_frozen": not any(p.requires_grad for p in model[0].parameters()),
        "tags": list(model.model_card_data.tags or []),
    }
report["glot_st_modules"] = sorted(m for m in sys.modules if m == "glot_st" or m.startswith("glot_st."))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    return save_tiny_backbone(tmp_path_factory.mktemp("backbone"), "bert")


def make_model(backbone: str, config: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = glot_st.from_backbone(backbone, device="cpu", **config)
    with torch.no_grad():  # non-default weights: a load that re-initialised anything would show
        for parameter in model[1].parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def run_without_glot_st(tmp_path: Path, sources: dict[str, str], hf_cache: Path | None = None) -> dict:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_MODULES_CACHE": str(tmp_path / "hf-modules"),
        "HF_HUB_CACHE": str(hf_cache or tmp_path / "empty-hub-cache"),
        "OMP_NUM_THREADS": "1",
    }
    request = {"sources": sources, "texts": TEXTS, "out": str(out)}
    done = subprocess.run(
        [sys.executable, "-I", "-c", NO_GLOT_SCRIPT, json.dumps(request)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["embeddings"] = {name: np.load(out / f"{name}.npy") for name in sources}
    return report


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_saved_model_loads_without_glot_st_from_a_folder_and_a_hub_cache(backbone, tmp_path, name):
    model = make_model(backbone, CONFIGS[name])
    expected = model.encode(TEXTS, convert_to_numpy=True)
    folder = tmp_path / "model"
    glot_st.save(model, folder)
    modules = json.loads((folder / "modules.json").read_text())
    assert modules[1]["type"] == "glot_modeling.GLOT"
    assert (folder / "glot_modeling.py").is_file()

    repo_id = f"glot-org/tiny-{name}"
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    cache = tmp_path / "hub-cache"
    place_in_hf_cache(files, cache, repo_id=repo_id, sha=SHA)

    report = run_without_glot_st(tmp_path, {"folder": str(folder), "repo": repo_id}, hf_cache=cache)
    assert report["glot_st_modules"] == []
    for source in ("folder", "repo"):
        assert report[source]["class_module"].startswith("transformers_modules."), report[source]
        assert report[source]["class_module"].endswith(".glot_modeling")
        assert report[source]["config"] == model[1].get_config_dict()
        assert report[source]["backbone_frozen"]  # on_model_ready ran (freezing), from the generated file
        assert "glot-st" in report[source]["tags"]  # and attached the GLOT model card
        np.testing.assert_allclose(report["embeddings"][source], expected, rtol=0, atol=1e-6)

    # with glot-st installed, glot_st.load gives the same model from the installed classes
    loaded = glot_st.load(str(folder), device="cpu")
    assert type(loaded[1]) is GLOT
    np.testing.assert_allclose(loaded.encode(TEXTS, convert_to_numpy=True), expected, rtol=0, atol=1e-6)
    by_repo = glot_st.load(repo_id, cache_folder=str(cache), device="cpu", local_files_only=True)
    assert type(by_repo[1]) is GLOT


def test_glot_st_load_never_runs_the_folders_modeling_file(backbone, tmp_path):
    model = make_model(backbone, {"hidden_dim": 8, "num_layers": 1})
    folder = tmp_path / "model"
    glot_st.save(model, folder)
    marker = tmp_path / "ran.txt"
    code = (folder / "glot_modeling.py").read_text()
    (folder / "glot_modeling.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + code)
    loaded = glot_st.load(str(folder), device="cpu")
    assert type(loaded[1]) is GLOT and not marker.exists()


def test_the_modeling_file_is_generated_from_the_package_sources(backbone, tmp_path):
    model = make_model(backbone, {"hidden_dim": 8, "num_layers": 1})
    glot_st.save(model, tmp_path / "model")
    written = (tmp_path / "model" / "glot_modeling.py").read_text()
    assert written == modeling_source()  # regenerated from today's sources: nothing to drift
    # the code that computes the embeddings is the package's own, verbatim
    for function in (GLOT.forward, GLOT._pool, GLOT._pool_dense, GLOT.load, AdaPool.pool, build_token_graph):
        assert inspect.getsource(function) in written, function.__qualname__
    for relative in BUNDLED_SOURCES:
        tree = ast.parse((PACKAGE_DIR / relative).read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert ast.get_source_segment((PACKAGE_DIR / relative).read_text(), node) in written, node.name


def test_the_modeling_file_imports_only_torch_sentence_transformers_safetensors_and_the_stdlib():
    tree = ast.parse(modeling_source())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import at line {node.lineno}"
            roots.add(node.module.split(".")[0])
    allowed = {"torch", "sentence_transformers", "safetensors", "numpy", "__future__"} | set(sys.stdlib_module_names)
    assert roots <= allowed, roots - allowed
    assert "glot_st" not in roots


def test_make_hub_native_keeps_old_class_paths_loading(backbone, tmp_path):
    """A plain ``model.save`` keeps ``glot_st.module.GLOT`` (glot_st.load reads it, and old models keep loading)."""
    model = make_model(backbone, {"hidden_dim": 8, "num_layers": 1})
    model.save(str(tmp_path / "plain"))
    assert json.loads((tmp_path / "plain" / "modules.json").read_text())[1]["type"] == "glot_st.module.GLOT"
    assert not (tmp_path / "plain" / "glot_modeling.py").exists()
    expected = model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(glot_st.load(str(tmp_path / "plain")).encode(TEXTS), expected, rtol=0, atol=1e-6)
    glot_st.hub.make_hub_native(tmp_path / "plain")
    glot_st.hub.make_hub_native(tmp_path / "plain")  # idempotent
    assert json.loads((tmp_path / "plain" / "modules.json").read_text())[1]["type"] == "glot_modeling.GLOT"
    np.testing.assert_allclose(glot_st.load(str(tmp_path / "plain")).encode(TEXTS), expected, rtol=0, atol=1e-6)
