"""train_cached and the data path: nothing lost (atomic output, cache temp files), nothing silently wrong
(validation slice, columns, labels), errors in the user's terms (file lines, column names, datasets' failures)."""

from __future__ import annotations

import errno
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import glot_st
import glot_st.train.cache.store as store_mod
import glot_st.train.loop as loop_mod
from glot_st.train import Columns, as_text_split, load_head, train_cached
from glot_st.train.heads import ClassificationHead

from tiny_backbones import save_tiny_backbone

POS = ["a good dog", "a great cat", "nice music today", "good food", "a lovely park", "great weather today"]
NEG = ["a bad dog", "terrible food", "bad weather", "a terrible song", "cold rain", "bad coffee"]
TEXTS, LABELS = POS + NEG, ["pos"] * 6 + ["neg"] * 6


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return save_tiny_backbone(tmp_path_factory.mktemp("guarded") / "bert", "bert", seed=5)


def tiny_model(backbone, seed=0):
    torch.manual_seed(seed)
    return glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1, dropout=0.0)


def fit(model, data, **kwargs):
    kwargs = {"epochs": 1, "batch_size": 4, "cache_dtype": "float32", "show_progress_bar": False, **kwargs}
    return train_cached(model, data, **kwargs)


@pytest.fixture()
def no_caching(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a cache was built before the error")

    monkeypatch.setattr(loop_mod, "_build_unique_cache", never)


def output_state(folder):
    model = glot_st.load(str(folder), device="cpu")
    z = torch.as_tensor(model.encode(TEXTS, convert_to_numpy=True))
    return z.numpy(), load_head(folder).predict(z).tolist(), json.loads((folder / "glot_training.json").read_text())


# ---------------------------------------------------------------------------------------- atomic output


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def crash(*args, **kwargs):
    raise RuntimeError("killed while saving")


@pytest.mark.parametrize("failure", [crash, disk_full], ids=["crash", "disk full"])
def test_failure_while_saving_keeps_the_previous_output(backbone, tmp_path, monkeypatch, failure):
    out = tmp_path / "out"
    fit(tiny_model(backbone, 0), (TEXTS, LABELS), output_dir=out)
    before = output_state(out)
    monkeypatch.setattr(ClassificationHead, "save", failure)  # after the new GLOT weights were written
    with pytest.raises((RuntimeError, OSError)):
        fit(tiny_model(backbone, 1), (TEXTS, LABELS), output_dir=out, lr=0.05, epochs=2)
    monkeypatch.undo()
    after = output_state(out)
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1:] == before[1:]


def test_another_model_folder_is_not_overwritten_without_asking(backbone, tmp_path, no_caching):
    other = tmp_path / "minilm_copy"
    glot_st.save(tiny_model(backbone), other)  # any sentence-transformers folder: modules.json, no training marker
    with pytest.raises(ValueError, match="a model that no glot-st training run wrote"):
        fit(tiny_model(backbone), (TEXTS, LABELS), output_dir=other)


def test_full_disk_while_caching_names_the_file_and_leaves_no_temporaries(backbone, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(store_mod.np, "save", disk_full)
    with pytest.raises(OSError, match="disk is full.*shard_00000"):
        fit(tiny_model(backbone), (TEXTS, LABELS), cache_dir=cache)
    monkeypatch.undo()
    assert not [p for p in cache.rglob("*") if "tmp" in p.name]


def test_stale_cache_temporaries_are_removed_by_the_next_build(backbone, tmp_path):
    from glot_st.train.cache import build_cache

    folder = tmp_path / "cache"
    folder.mkdir()
    stale = [folder / "shard_00000.npy.123.deadbeef.tmp", folder / ".shard_00000.npy.glot-tmp-123-deadbeef"]
    for path in stale:
        path.write_bytes(b"half")
    build_cache(tiny_model(backbone), TEXTS, folder, show_progress_bar=False)
    assert not any(path.exists() for path in stale)


# ---------------------------------------------------------------------------------------- hostile heads


def head_folder(backbone, tmp_path):
    out = tmp_path / "out"
    fit(tiny_model(backbone), (TEXTS, LABELS), output_dir=out)
    return out / "glot_head"


def set_head(key, value):
    def edit(folder):
        config = json.loads((folder / "glot_head.json").read_text())
        (folder / "glot_head.json").write_text(json.dumps({**config, key: value}))
    return edit


def nan_head(folder):
    state = load_file(str(folder / "glot_head.safetensors"))
    save_file({k: torch.full_like(v, math.nan) for k, v in state.items()}, str(folder / "glot_head.safetensors"))


HOSTILE_HEADS = {
    "NaN weights": (nan_head, "NaN or infinite"),
    "duplicate label names": (set_head("label_names", ["pos", "pos"]), "appears twice"),
    "dict label names": (set_head("label_names", [{"a": 1}, "neg"]), "labels must be strings or numbers"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADS))
def test_hostile_head_is_refused(backbone, tmp_path, case):
    damage, needle = HOSTILE_HEADS[case]
    folder = head_folder(backbone, tmp_path)
    damage(folder)
    with pytest.raises(ValueError, match=needle):
        load_head(folder)


def test_head_sizes_are_compared_with_the_weights_before_building(backbone, tmp_path):
    folder = head_folder(backbone, tmp_path)
    config = json.loads((folder / "glot_head.json").read_text())
    config.pop("label_names")
    config["num_labels"] = 10**12  # a terabyte head if it were built
    (folder / "glot_head.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="shape"):
        load_head(folder)


# ---------------------------------------------------------------------------------------- silently wrong


def test_validation_slice_taking_whole_classes_out_of_training_is_an_error(backbone, no_caching):
    texts = [f"text number {i}" for i in range(1000)]
    with pytest.raises(ValueError, match="would take every row of .* class"):
        fit(tiny_model(backbone), (texts, [f"c{i}" for i in range(1000)]))


def test_high_validation_fraction_on_few_rows_is_an_error(backbone, no_caching):
    texts = [f"row {i}" for i in range(31)]
    with pytest.raises(ValueError, match="would take every row"):
        fit(tiny_model(backbone), (texts, [i % 3 for i in range(31)]), validation_fraction=0.95)


def test_validation_label_never_trained_is_an_error(backbone, no_caching):
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] that no training row has"):
        fit(tiny_model(backbone), (TEXTS, [0, 1] * 6), validation_split=(TEXTS[:4], [0, 1, 7, 1]), task=None)


def test_text_b_column_equal_to_text_column_is_an_error():
    with pytest.raises(ValueError, match="both the text and the text_b column"):
        as_text_split({"s": TEXTS, "label": LABELS}, Columns("s", "s", "label"))


def test_inf_score_is_refused_by_row():
    scores = [0.5] * 11 + [math.inf]
    with pytest.raises(ValueError, match="row 11 column 'labels': label is inf"):
        as_text_split((TEXTS, TEXTS[::-1], scores))


def test_unknown_head_kind_is_a_clear_error(backbone, no_caching):
    with pytest.raises(ValueError, match="unknown head kind 'nope'"):
        fit(tiny_model(backbone), (TEXTS, LABELS), head_kind="nope")


def test_min_score_above_max_score_is_named(backbone, no_caching):
    scores = [float(i % 5) for i in range(12)]
    with pytest.raises(ValueError, match="min_score 4 exceeds max_score 1"):
        fit(tiny_model(backbone), (TEXTS, TEXTS[::-1], scores), head_config={"min_score": 4.0, "max_score": 1.0})


def test_huge_class_id_is_refused_before_any_allocation(backbone, no_caching):
    with pytest.raises(ValueError, match="would mean 1000000000001 classes"):
        fit(tiny_model(backbone), (TEXTS, [0] * 11 + [10**12]))


# ---------------------------------------------------------------------------------------- the user's terms


def test_row_numbers_are_file_lines_before_the_validation_slice(backbone, tmp_path, no_caching):
    rows = [{"text": t, "label": y} for t, y in zip(TEXTS * 3, LABELS * 3)]
    rows[3]["text"] = None
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"train.jsonl line 4 column 'text': text is missing"):
        fit(tiny_model(backbone), path)
    rows[3]["text"], rows[29]["text"] = "fine", ""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"train.jsonl line 30 column 'text': text is empty"):
        fit(tiny_model(backbone), path)


def test_csv_row_numbers_count_the_header(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(5)) + ",1\n")
    with pytest.raises(ValueError, match=r"train.csv line 7 column 'text': text is missing"):
        as_text_split(path)


BROKEN_FILES = {
    "empty": ("x.csv", b"", "is empty"),
    "header only": ("x.csv", b"text,label\n", "holds no rows"),
    "not utf-8": ("x.csv", b"text,label\ngood,1\n\xff\xfe bad,0\n", "line 3 is not UTF-8"),
    "ragged tsv": ("x.tsv", b"text\tlabel\na\t1\nb\t0\textra\tmore\n", "line 3 has 4 field"),
    "broken jsonl": ("x.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", "label": \n', "line 2 is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_datasets_failures_name_the_file_and_the_cause(tmp_path, case):
    name, content, needle = BROKEN_FILES[case]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=needle) as info:
        as_text_split(path)
    assert name in str(info.value)
