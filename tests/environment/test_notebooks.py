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

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_train_glot.ipynb", "03_stress_test.ipynb"]
# smaller sizes for the cell tagged "parameters" (the notebook runs as written otherwise): every cell still runs
TEST_SIZES = {
    "02_train_glot.ipynb": "TRAIN_ROWS, DEV_ROWS, EPOCHS, OWN_ROWS = 400, 100, 3, 100",
    "03_stress_test.ipynb": "RHOS, N_TRAIN, N_EVAL, EPOCHS = (0.2, 0.8), 64, 32, 2",
}


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


def with_test_sizes(notebook, name: str):
    """The notebook with its ``parameters`` cell set to ``TEST_SIZES[name]`` (unchanged without an entry)."""
    if name in TEST_SIZES:
        cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
        assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
        cells[0].source = TEST_SIZES[name]
    return notebook


def test_every_test_size_names_the_notebook_parameters():
    for name, sizes in TEST_SIZES.items():
        notebook = nbformat.read(str(NOTEBOOK_DIR / name), as_version=4)
        (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert sizes.split("=")[0] == cell.source.splitlines()[-1].split("=")[0]  # the same names, new values


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,expected",
    [
        ("01_quickstart.ipynb", ["query: A man is eating pasta.", "same embeddings after reload: True", "pip install glot-st"]),
        ("02_train_glot.ipynb", ["validation accuracy", "GLOT ", "mean ", "<image/png>", "single-sentence classification", "positive"]),
        ("03_stress_test.ipynb", ["GLOT: acc", "<image/png>"]),
    ],
)
def test_notebook_runs(name, expected, tmp_path):
    notebook = with_test_sizes(nbformat.read(str(NOTEBOOK_DIR / name), as_version=4), name)
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    text = _outputs(notebook)
    for snippet in expected:
        assert snippet in text, f"{name}: {snippet!r} not in the outputs:\n{text[-3000:]}"
