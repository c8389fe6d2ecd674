"""Hostile and damaged model folders: every case is refused by glot_st.load with an error naming the problem,
before anything is allocated from the folder's sizes."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import glot_st
from glot_st.safe_read import read_json_file, read_safetensors_header

from tiny_backbones import save_tiny_backbone


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("checked_loads")
    backbone = save_tiny_backbone(root / "bert", "bert", seed=4)
    torch.manual_seed(0)
    model = glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=2, dropout=0.0)
    glot_st.save(model, root / "model")
    return root / "model"


@pytest.fixture()
def folder(saved_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(saved_model, copy)
    return copy


def glot_dir(folder):
    entries = json.loads((folder / "modules.json").read_text())
    return folder / next(e["path"] for e in entries if "GLOT" in e["type"])


def edit_json(path, change):
    value = json.loads(path.read_text())
    value = change(value)
    path.write_text(json.dumps(value))


def set_config(key, value):
    def change(folder):
        edit_json(glot_dir(folder) / "glot_config.json", lambda c: {**c, key: value})
    return change


def edit_weights(change):
    def edit(folder):
        path = glot_dir(folder) / "model.safetensors"
        state = load_file(str(path))
        save_file(change(state), str(path))
    return edit


def nan_weights(state):
    return {k: torch.full_like(v, float("nan")) for k, v in state.items()}


def int_weights(state):
    return {k: v.to(torch.int64) for k, v in state.items()}


def truncate_glot(folder):
    path = glot_dir(folder) / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def config_is_dev_zero(folder):
    path = glot_dir(folder) / "glot_config.json"
    path.unlink()
    os.symlink("/dev/zero", path)


def modules(change):
    def edit(folder):
        edit_json(folder / "modules.json", change)
    return edit


def model_type(name):
    def edit(folder):
        edit_json(folder / "config_sentence_transformers.json", lambda c: {**c, "model_type": name})
    return edit


def corrupt_modules(folder):
    (folder / "modules.json").write_text("[{\"idx\": 0,")


HOSTILE = {
    "hidden_dim 1e9": (set_config("hidden_dim", 10**9), "shape"),
    "num_layers 1e6": (set_config("num_layers", 10**6), "gives 1000000 layers but the weights file .* holds 2"),
    "config symlink to /dev/zero": (config_is_dev_zero, "not a regular file"),
    "all-NaN weights": (edit_weights(nan_weights), "NaN or infinite"),
    "int64 weights": (edit_weights(int_weights), "dtype I64; weights must be floats"),
    "truncated weights": (truncate_glot, "truncated"),
    "modules.json names util.http_get": (
        modules(lambda e: [e[0], {"idx": 9, "name": "9", "path": "", "type": "sentence_transformers.util.http_get"}, e[1]]),
        "http_get', which is not a sentence-transformers module class",
    ),
    "modules.json in the wrong order": (modules(lambda e: e[::-1]), "first module must be a sentence-transformers Transformer"),
    "corrupt modules.json": (corrupt_modules, "modules.json of .* is not valid JSON"),
    "CrossEncoder folder": (model_type("CrossEncoder"), "is a 'CrossEncoder' model"),
    "SparseEncoder folder": (model_type("SparseEncoder"), "is a 'SparseEncoder' model"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_folder_is_refused_with_a_named_cause(folder, case):
    damage, needle = HOSTILE[case]
    damage(folder)
    with pytest.raises(ValueError, match=needle):
        glot_st.load(str(folder), device="cpu")


def test_sizes_are_checked_before_any_allocation(folder, monkeypatch):
    set_config("hidden_dim", 10**9)(folder)
    real_empty = torch.empty

    def guarded_empty(*size, **kwargs):
        device = kwargs.get("device") or torch.get_default_device()  # the meta context sets the default
        numel = 1
        for n in (size[0] if size and isinstance(size[0], (tuple, list, torch.Size)) else size):
            numel *= int(n)
        if str(device) != "meta" and numel > 10**8:
            raise AssertionError(f"allocated {numel} elements")
        return real_empty(*size, **kwargs)

    monkeypatch.setattr(torch, "empty", guarded_empty)
    with pytest.raises(ValueError, match="shape"):
        glot_st.load(str(folder), device="cpu")


def test_undamaged_copy_still_loads(folder):
    model = glot_st.load(str(folder), device="cpu")
    assert model.encode(["a good dog"], convert_to_numpy=True).shape[0] == 1


def test_json_reads_are_capped(tmp_path):
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600_000 + "0]")
    with pytest.raises(ValueError, match="larger than"):
        read_json_file(big, "config")


def test_safetensors_header_length_is_capped(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="bad header length"):
        read_safetensors_header(path)
