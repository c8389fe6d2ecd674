"""Safe loading: glot_st.load runs no code from the model folder, refuses foreign classes, names missing config
keys; and the sentence-transformers conventions GLOT follows (include_prompt, flattened FlashAttention-2 input)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import glot_st
from glot_st import GLOT, AdaPool
from glot_st.features import exclude_prompt, unflatten_tokens

from tiny_backbones import save_tiny_backbone

TEXTS = ["a man plays the guitar .", "the dog runs", "it is sunny outside today and the cat sleeps"]

EVIL_MODULE = """
import pathlib

pathlib.Path({marker!r}).write_text("imported")

import torch


class Evil(torch.nn.Module):
    def __init__(self):
        super().__init__()
        pathlib.Path({marker!r}).write_text("instantiated")

    def forward(self, features, **kwargs):
        return features

    @classmethod
    def load(cls, *args, **kwargs):
        return cls()
"""


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    return save_tiny_backbone(tmp_path_factory.mktemp("backbone"), "bert")


@pytest.fixture(scope="module")
def saved_model(backbone, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1, tau=0.3)
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save(str(folder))
    return folder


def malicious_copy(saved_model: Path, tmp_path: Path, class_ref: str = "custom.Evil") -> tuple[Path, Path]:
    """A saved GLOT model whose modules.json also names ``class_ref``, with ``custom.py`` beside it."""
    folder = tmp_path / "evil-model"
    shutil.copytree(saved_model, folder)
    marker = tmp_path / "marker.txt"
    (folder / "custom.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    (folder / "2_Evil").mkdir()
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Evil", "type": class_ref})
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder, marker


# ---- foreign classes -------------------------------------------------------------------------------------------
def test_load_refuses_a_foreign_module_class_and_runs_none_of_its_code(saved_model, tmp_path):
    folder, marker = malicious_copy(saved_model, tmp_path)
    with pytest.raises(ValueError, match=r"custom\.Evil") as info:
        glot_st.load(str(folder), device="cpu")
    assert "trust_remote_code=True" in str(info.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"custom\.Evil"):
        glot_st.from_backbone(str(folder), device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("class_ref", ["glot_st.evil.Evil", "builtins.object", "someorg/other-repo--custom.Evil"])
def test_load_refuses_other_class_paths(saved_model, tmp_path, class_ref):
    folder, marker = malicious_copy(saved_model, tmp_path, class_ref)
    with pytest.raises(ValueError, match=class_ref.replace(".", r"\.")):
        glot_st.load(str(folder), device="cpu")
    assert not marker.exists()


@pytest.mark.slow
def test_with_trust_remote_code_from_the_caller_the_behaviour_is_sentence_transformers(saved_model, tmp_path):
    """The caller's explicit trust_remote_code=True: the folder's own class is loaded as sentence-transformers
    loads it (its code runs; in a subprocess, so transformers' module cache is a temporary folder)."""
    folder, marker = malicious_copy(saved_model, tmp_path)
    script = (
        "import sys, glot_st\n"
        "model = glot_st.load(sys.argv[1], trust_remote_code=True, device='cpu')\n"
        "print(type(model[1]).__module__, type(model[2]).__name__)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": str(Path(glot_st.__file__).resolve().parents[1]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["glot_st.module", "Evil"]  # GLOT still from the installed package
    assert marker.read_text() == "instantiated"


def test_load_of_a_folder_without_a_glot_module_says_so(minilm_dir, tmp_path):
    with pytest.raises(ValueError, match="no glot-st module"):
        glot_st.load(minilm_dir, device="cpu")
    with pytest.raises(ValueError, match="no modules.json"):
        glot_st.load(str(tmp_path), device="cpu")


def test_from_backbone_still_reads_a_plain_sentence_transformers_folder(minilm_dir):
    model = glot_st.from_backbone(minilm_dir, device="cpu", hidden_dim=8, num_layers=1)
    assert type(model[1]) is GLOT and model[1].in_dim == 384


def test_backbone_remote_code_is_not_run_by_load(saved_model, tmp_path):
    """A config.json asking for remote modeling code: the backbone loads with trust_remote_code=False, so
    transformers uses its own BERT code and never runs the folder's file."""
    folder = tmp_path / "remote-backbone"
    shutil.copytree(saved_model, folder)
    marker = tmp_path / "backbone-marker.txt"
    (folder / "evil_bert.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import BertModel\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil_bert.BertModel", "AutoConfig": "evil_bert.BertConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    model = glot_st.load(str(folder), device="cpu")
    assert type(model[0].auto_model).__module__.startswith("transformers.models.bert")
    assert not marker.exists()


# ---- glot_config.json keys -------------------------------------------------------------------------------------
def test_missing_config_keys_that_change_embeddings_are_an_error_naming_them(tmp_path):
    GLOT(in_dim=8, hidden_dim=4).save(str(tmp_path))
    config = json.loads((tmp_path / "glot_config.json").read_text())
    del config["tau"], config["graph"]
    (tmp_path / "glot_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"glot_config\.json.*\['tau', 'graph'\]"):
        GLOT.load(str(tmp_path))


def test_missing_runtime_keys_warn_and_keys_added_later_default_silently(tmp_path, caplog):
    glot = GLOT(in_dim=8, hidden_dim=4, layout="sparse", include_prompt=False)
    glot.save(str(tmp_path))
    config = json.loads((tmp_path / "glot_config.json").read_text())
    assert config["include_prompt"] is False
    del config["layout"], config["include_prompt"]
    (tmp_path / "glot_config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="glot_st.module"):
        loaded = GLOT.load(str(tmp_path))
    assert "['layout']" in caplog.text and "include_prompt" not in caplog.text
    assert loaded.layout == "auto" and loaded.include_prompt is True


# ---- include_prompt ----------------------------------------------------------------------------------------------
def captured_features(model, texts, prompt):
    """The features GLOT receives from ``model.encode(texts, prompt=prompt)``."""
    seen = []
    handle = model[1].register_forward_pre_hook(
        lambda module, args: seen.append({k: v.clone() if torch.is_tensor(v) else v for k, v in args[0].items()})
    )
    try:
        model.encode(texts, prompt=prompt, batch_size=len(texts))
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("style", ["bert", "llama"])
def test_with_include_prompt_false_the_prompt_tokens_do_not_change_the_embedding(tmp_path, style):
    backbone = save_tiny_backbone(tmp_path / style, style)
    torch.manual_seed(1)
    model = glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=2, tau=0.0, dropout=0.0)
    model.eval()
    features = captured_features(model, TEXTS, prompt="query : ")
    prompt_length = features["prompt_length"]
    prompt_length = int(prompt_length.flatten()[0]) if torch.is_tensor(prompt_length) else int(prompt_length)
    assert prompt_length >= 2
    mask = features["attention_mask"].bool()
    first = mask.int().argmax(1)  # padding may be on the left for the decoder style
    prompt_positions = torch.zeros_like(mask)
    for row, start in enumerate(first.tolist()):
        prompt_positions[row, start : start + prompt_length] = True
    changed = dict(features)
    noise = torch.randn_like(features["token_embeddings"]) * 3.0
    changed["token_embeddings"] = torch.where(prompt_positions.unsqueeze(-1), noise, features["token_embeddings"])
    for include_prompt in (False, True):
        model[1].include_prompt = include_prompt
        with torch.no_grad():
            base = model[1](dict(features))["sentence_embedding"]
            other = model[1](dict(changed))["sentence_embedding"]
        if include_prompt:
            assert float((base - other).abs().max()) > 1e-3
        else:
            torch.testing.assert_close(other, base, rtol=0, atol=1e-6)
            # and it is GLOT over the tokens after the prompt
            want = model[1].pool(features["token_embeddings"], mask & ~prompt_positions)
            torch.testing.assert_close(base, want, rtol=0, atol=1e-6)
    assert torch.equal(features["attention_mask"].bool(), mask)  # the caller's mask is not changed


def test_include_prompt_is_saved_and_reloaded(backbone, tmp_path):
    model = glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1, include_prompt=False)
    glot_st.save(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "1_GLOT" / "glot_config.json").read_text())["include_prompt"] is False
    assert glot_st.load(str(tmp_path / "m"))[1].include_prompt is False


def test_exclude_prompt_either_padding_side():
    mask = torch.tensor([[1, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 0, 0, 0]])
    got = exclude_prompt(mask, 2)
    assert got.tolist() == [[0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert mask.tolist()[0] == [1, 1, 1, 1, 0]


# ---- flattened (FlashAttention-2 unpadded) input -----------------------------------------------------------------
def flatten(features):
    """The flattened layout sentence-transformers' Transformer gives with FlashAttention-2 unpadding."""
    mask = features["attention_mask"].bool()
    lengths = mask.sum(1)
    flat = {
        "token_embeddings": features["token_embeddings"][mask].unsqueeze(0),
        "cu_seq_lens_q": torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).to(torch.int32)]),
        "max_length_q": int(lengths.max()),
    }
    if "prompt_length" in features:
        flat["prompt_length"] = features["prompt_length"]
    return flat


@pytest.mark.parametrize("include_prompt", [True, False])
def test_flattened_input_gives_the_padded_result(backbone, include_prompt):
    torch.manual_seed(2)
    model = glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=2, tau=0.2, dropout=0.0)
    model.eval()
    model[1].include_prompt = include_prompt
    features = captured_features(model, TEXTS, prompt="query : ")
    assert not bool(features["attention_mask"].bool().all())  # the batch has padding
    pool = AdaPool(32).eval()
    with torch.no_grad():
        want = model[1](dict(features))["sentence_embedding"]
        got = model[1](flatten(features))["sentence_embedding"]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        flat = flatten(features)
        del flat["max_length_q"]
        torch.testing.assert_close(model[1](flat)["sentence_embedding"], want, rtol=0, atol=1e-6)
        torch.testing.assert_close(
            pool(flatten(features))["sentence_embedding"], pool(dict(features))["sentence_embedding"], rtol=0, atol=1e-6
        )


def test_features_without_a_mask_or_offsets_are_refused():
    glot = GLOT(in_dim=8, hidden_dim=4)
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        glot({"token_embeddings": torch.randn(2, 3, 8)})
    with pytest.raises(ValueError, match="ends at"):
        unflatten_tokens(torch.randn(1, 5, 8), torch.tensor([0, 2, 4]))


# ---- model card ------------------------------------------------------------------------------------------------
def test_training_info_is_written_into_the_card(backbone, tmp_path):
    model = glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1)
    glot_st.set_training_info(
        model, task="stsb", metric_name="spearman", metric_value=0.8123, eval_split="dev", details={"epochs": 3}
    )
    model.save(str(tmp_path / "m"))
    card = (tmp_path / "m" / "README.md").read_text()
    assert "#### Training" in card and "Task: `stsb`" in card
    assert "`spearman` = 0.8123" in card and "`dev` split" in card and "| `epochs` | `3` |" in card
    assert "#### GLOT configuration" in card
