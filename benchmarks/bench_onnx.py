"""ONNX export benchmark: agreement with torch, CPU speed (fp32 and int8) and the int8 quality change.

Command (writes ``benchmarks/results/onnx.json``; the README's Deploy table is copied from it)::

    nice -n 5 .venv/bin/python benchmarks/bench_onnx.py

Two GLOT models over frozen all-MiniLM-L6-v2 (library defaults) are trained briefly with ``train_cached``: one
with a classification head on the first ``--train-rows`` rows of SST-2 train, one with the regression head on the
first ``--train-rows`` pairs of STS-B train (``--epochs`` epochs, the epoch chosen on a slice of train). Both are
exported with ``glot_st.export_onnx(..., quantize=True)`` (the SST-2 one with its head). Then

- agreement: ``benchmarks/onnx_client.py`` runs the exports in a child process where torch and glot_st cannot be
  imported: ONNX embeddings of ``--sentences`` STS-B dev sentences against ``model.encode``, and the exported
  SST-2 probabilities on SST-2 dev against torch's softmax of the head's logits (max abs difference);
- speed: the SST-2 model on the same sentences at batch 32, torch ``encode`` vs onnxruntime fp32 and int8 (texts
  to embeddings, tokenization included, length-sorted batches on both sides), with 1 and 2 threads
  (``torch.set_num_threads``, onnxruntime ``intra_op_num_threads``), interleaved repeats, medians;
- quality: STS-B test Spearman of the regression head's score and SST-2 dev accuracy, from torch, ONNX fp32 and
  ONNX int8 embeddings / probabilities of the same trained models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import glot_st
from glot_st.resources import minilm_path
from glot_st.train import load_split, train_cached
from glot_st.train.export_head import probability_head

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_client import make_session, onnx_encode  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIENT = Path(__file__).resolve().parent / "onnx_client.py"


def train(task: str, rows: int, epochs: int, cache_dir: Path):
    """A MiniLM + GLOT model and its head, trained on the first ``rows`` rows of ``task`` train."""
    torch.manual_seed(0)
    model = glot_st.from_backbone(minilm_path(), device="cpu")
    result = train_cached(model, load_split(task, "train", limit=rows), epochs=epochs, cache_dir=cache_dir,
                          show_progress_bar=False)
    model.eval()
    return model, result.head.eval(), result.best_epoch


def blocked_outputs(folder: Path, model_file: str, texts: list[str], work: Path) -> dict[str, np.ndarray]:
    """The export's outputs for ``texts``, computed by onnx_client.py where torch and glot_st cannot be imported."""
    texts_path, out_path = work / "texts.json", work / "out.npz"
    texts_path.write_text(json.dumps(texts), encoding="utf-8")
    command = [sys.executable, str(CLIENT), "--folder", str(folder), "--model-file", model_file,
               "--texts", str(texts_path), "--output", str(out_path), "--threads", "2"]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    assert not {"torch", "glot_st"} & set(report["modules"]), report["modules"]
    with np.load(out_path) as data:
        return {name: data[name] for name in data.files}


def unique_texts(split, limit: int | None = None) -> list[str]:
    texts = list(dict.fromkeys(split.texts_a + (split.texts_b or [])))
    return texts[:limit] if limit else texts


def timings(model, folder: Path, texts: list[str], threads: int, repeats: int) -> dict[str, float]:
    """Median seconds of torch encode, onnxruntime fp32 and int8 for ``texts`` at batch 32, interleaved."""
    from tokenizers import Tokenizer

    torch.set_num_threads(threads)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    sessions = {name: make_session(folder / name, threads) for name in ("model.onnx", "model_int8.onnx")}
    runs = {
        "torch": lambda: model.encode(texts, batch_size=32, convert_to_numpy=True),
        "onnx_fp32": lambda: onnx_encode(sessions["model.onnx"], tokenizer, texts, 32),
        "onnx_int8": lambda: onnx_encode(sessions["model_int8.onnx"], tokenizer, texts, 32),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        **{f"{name}_seconds": round(value, 4) for name, value in medians.items()},
        "fp32_speedup": round(medians["torch"] / medians["onnx_fp32"], 3),
        "int8_speedup": round(medians["torch"] / medians["onnx_int8"], 3),
    }


def sts_spearman(head, z_a: np.ndarray, z_b: np.ndarray, gold: list[float]) -> float:
    with torch.no_grad():
        scores = head.predict(torch.from_numpy(z_a), torch.from_numpy(z_b)).numpy()
    return float(spearmanr(scores, gold).statistic)


def quality(models, folders, work: Path) -> dict[str, dict[str, float]]:
    """STS-B test Spearman x100 and SST-2 dev accuracy x100 from torch, ONNX fp32 and ONNX int8."""
    (sts_model, sts_head), (sst_model, sst_head) = models
    sts, sst = load_split("stsb", "test"), load_split("sst2", "dev")
    sts_texts = unique_texts(sts)
    index = {text: i for i, text in enumerate(sts_texts)}
    rows_a, rows_b = [index[t] for t in sts.texts_a], [index[t] for t in sts.texts_b]
    torch_sts = sts_model.encode(sts_texts, batch_size=32, convert_to_numpy=True)
    with torch.no_grad():
        torch_probs = torch.softmax(sst_head(sst_model.encode(sst.texts_a, convert_to_tensor=True).clone()), -1)
    labels = np.array(sst.labels)
    out = {"torch": {"stsb_spearman": sts_spearman(sts_head, torch_sts[rows_a], torch_sts[rows_b], sts.labels),
                     "sst2_accuracy": float((torch_probs.numpy().argmax(1) == labels).mean())}}
    probabilities = {}
    for name, model_file in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model_int8.onnx")):
        emb = blocked_outputs(folders[0], model_file, sts_texts, work)["sentence_embedding"]
        probabilities[name] = blocked_outputs(folders[1], model_file, sst.texts_a, work)["probabilities"]
        out[name] = {"stsb_spearman": sts_spearman(sts_head, emb[rows_a], emb[rows_b], sts.labels),
                     "sst2_accuracy": float((probabilities[name].argmax(1) == labels).mean())}
    out = {k: {m: round(100 * v, 2) for m, v in scores.items()} for k, scores in out.items()}
    out["sst2_probabilities_max_abs_difference_fp32"] = float(np.abs(probabilities["onnx_fp32"] - torch_probs.numpy()).max())
    out["sst2_rows"], out["stsb_test_pairs"] = len(sst), len(sts)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(RESULTS / "onnx.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sts_model, sts_head, sts_epoch = train("stsb", args.train_rows, args.epochs, work / "cache")
        sst_model, sst_head, sst_epoch = train("sst2", args.train_rows, args.epochs, work / "cache")
        export_start = time.perf_counter()
        sts_folder = glot_st.export_onnx(sts_model, work / "stsb-onnx", quantize=True)
        export_seconds = time.perf_counter() - export_start
        head, labels = probability_head(sst_head)
        sst_folder = glot_st.export_onnx(sst_model, work / "sst2-onnx", head=head, labels=labels, quantize=True)
        texts = unique_texts(load_split("stsb", "dev"), args.sentences)
        onnx_emb = blocked_outputs(sst_folder, "model.onnx", texts, work)["sentence_embedding"]
        torch_emb = sst_model.encode(texts, batch_size=32, convert_to_numpy=True)
        lengths = [len(ids) for ids in sst_model.tokenizer(texts)["input_ids"]]
        scores = quality(((sts_model, sts_head), (sst_model, sst_head)), (sts_folder, sst_folder), work)
        speed = {f"threads_{t}": timings(sst_model, sst_folder, texts, int(t), args.repeats)
                 for t in args.threads.split(",")}
        sizes = {name: (sst_folder / name).stat().st_size for name in ("model.onnx", "model_int8.onnx")}
    result = {
        "command": "nice -n 5 .venv/bin/python benchmarks/bench_onnx.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "training": {"rows": args.train_rows, "epochs": args.epochs, "stsb_best_epoch": sts_epoch,
                     "sst2_best_epoch": sst_epoch},
        "export_seconds": round(export_seconds, 1),
        "file_bytes": sizes,
        "agreement": {"sentences": len(texts), "tokens_min_median_max": [min(lengths), int(np.median(lengths)),
                                                                          max(lengths)],
                      "embedding_max_abs_difference_fp32": float(np.abs(onnx_emb - torch_emb).max()),
                      "computed_without_torch": True},
        "quality": scores,
        "speed_batch_32": speed,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
