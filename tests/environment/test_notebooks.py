"""The example notebooks: committed without outputs, in sync with ``scripts/make_notebooks.py``, and each
runs top to bottom (nbclient, the ``python3`` kernel of the interpreter running the tests) without an error.

nbclient starts the kernel from the ``python3`` kernelspec; jupyter_client launches a kernelspec whose
command is plain ``python`` with ``sys.executable``, so the kernel is this venv's Python. The kernel inherits
this process's environment (``HF_HUB_OFFLINE=1`` from ``conftest.py``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_train_glot.ipynb", "03_stress_test.ipynb"]


def _make_notebooks_module():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_match_the_generator_and_have_no_outputs(tmp_path):
    _make_notebooks_module().write_all(tmp_path)
    for name in NOTEBOOKS:
        committed = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
        generated = json.loads((tmp_path / name).read_text(encoding="utf-8"))
        assert committed == generated, f"{name} differs from scripts/make_notebooks.py: rerun the script"
        for cell in committed["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name} holds outputs"


def _outputs(notebook) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                texts.append(str(output.data.get("text/plain", "")))
                if "image/png" in output.data:
                    texts.append("<image/png>")
    return "\n".join(texts)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("01_quickstart.ipynb", ["query: A man is eating pasta.", "same embeddings after reload: True", "pip install glot-st"]),
        ("02_train_glot.ipynb", ["validation accuracy", "GLOT ", "mean ", "<image/png>", "single-sentence classification", "positive"]),
        ("03_stress_test.ipynb", ["GLOT: acc", "<image/png>"]),
    ],
)
def test_notebook_runs(name, expected, tmp_path):
    notebook = nbformat.read(str(NOTEBOOK_DIR / name), as_version=4)
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    text = _outputs(notebook)
    for snippet in expected:
        assert snippet in text, f"{name}: {snippet!r} not in the outputs:\n{text[-3000:]}"
