"""Task heads and cached training: losses, label/column errors, determinism, best checkpoint, save/reload."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import glot_st
import glot_st.train.loop as training_mod
from glot_st.baselines import make_pooler
from glot_st.train import load_head, train_cached
from glot_st.train.data import TextSplit, load_split
from glot_st.train.heads import (
    ClassificationHead,
    ContrastiveHead,
    PairClassificationHead,
    RegressionHead,
    make_head,
)
from glot_st.train.heads import load_head as heads_load_head

# ------------------------------------------------------------------------------------------------ heads


def test_classification_head_loss_and_label_errors():
    torch.manual_seed(0)
    head = ClassificationHead(8, num_labels=3)
    z = torch.randn(4, 8)
    labels = [0, 2, 1, 2]
    targets = head.check_labels(labels)
    assert targets.dtype == torch.long and targets.tolist() == labels
    expected = F.cross_entropy(head.linear(z), torch.tensor(labels))
    torch.testing.assert_close(head.loss(z, None, targets), expected)
    assert head.predict(z).tolist() == head.linear(z).argmax(-1).tolist()
    with pytest.raises(ValueError, match=r"row 1 is 3, outside \[0, 3\)"):
        head.check_labels([0, 3, 1, 2])
    with pytest.raises(TypeError, match="check_labels"):
        head.loss(z, None, labels)  # raw labels: the loss takes check_labels' tensor
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        head.loss(z, None, targets[:3])
    with pytest.raises(ValueError, match=r"row 12 is -1"):
        head.check_labels([0, -1], row_ids=[11, 12])
    with pytest.raises(ValueError, match="row 0 is None"):
        head.check_labels([None])
    with pytest.raises(ValueError, match="row 1 is 1.5"):
        head.check_labels([1, 1.5])


def test_pair_head_features_and_needs_pairs():
    torch.manual_seed(0)
    head = PairClassificationHead(8, num_labels=2)  # default: [u; v; |u - v|; u * v]
    assert head.linear.in_features == 32
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    torch.testing.assert_close(head(a, b), head.linear(torch.cat([a, b, (a - b).abs(), a * b], -1)))
    paper = PairClassificationHead(8, num_labels=2, features="concat")  # the GLOT paper's [u; v]
    assert paper.linear.in_features == 16
    torch.testing.assert_close(paper(a, b), paper.linear(torch.cat([a, b], -1)))
    with pytest.raises(ValueError, match="z_b"):
        head.loss(a, None, head.check_labels([0, 1, 0]))
    assert head.config == {"kind": "pair", "dim": 8, "num_labels": 2, "features": "full"}
    with pytest.raises(ValueError, match="num_labels must be >= 2"):
        PairClassificationHead(8, num_labels=1)
    with pytest.raises(ValueError, match="pair features"):
        PairClassificationHead(8, num_labels=2, features="sum")


def test_pair_heads_saved_before_the_features_option_load_as_concat(tmp_path):
    head = PairClassificationHead(8, num_labels=2, features="concat")
    head.save(tmp_path)
    config = json.loads((tmp_path / "glot_head.json").read_text())
    del config["features"]  # what an older version wrote
    (tmp_path / "glot_head.json").write_text(json.dumps(config))
    assert load_head(tmp_path).features_kind == "concat"


def test_class_labels_reject_numpy_floats_and_bools_naming_the_row():
    head = ClassificationHead(4, num_labels=3)
    assert head.check_labels([np.int64(2), np.float32(1.0), 0.0, np.uint8(1)]).tolist() == [2, 1, 0, 1]
    assert head.check_labels(np.array([0, 2])).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"row 1 is \S*0\.5"):
        head.check_labels([1, np.float32(0.5)])  # was silently truncated to class 0
    with pytest.raises(ValueError, match="row 2 is"):
        head.check_labels([1, 0, np.bool_(True)])  # not a class id
    with pytest.raises(ValueError, match="row 0 is True"):
        head.check_labels([True])
    with pytest.raises(ValueError, match="row 0 is"):
        head.check_labels(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="row 1 is nan"):
        head.check_labels([0, float("nan")])
    with pytest.raises(ValueError, match="row 0 is '1'"):
        head.check_labels(["1"])
    with pytest.raises(ValueError, match="row 1 is"):
        RegressionHead(4).check_labels([1.0, np.bool_(False)])


def test_regression_head_is_mse_of_projected_cosine_against_scaled_score():
    torch.manual_seed(0)
    head = RegressionHead(8, proj_dim=4)
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    scores = [5.0, 0.0, 2.5]
    cos = F.cosine_similarity(head.proj(a), head.proj(b), dim=-1)
    targets = head.check_labels(scores)
    torch.testing.assert_close(targets, torch.tensor([1.0, 0.0, 0.5]))
    torch.testing.assert_close(head.loss(a, b, targets), F.mse_loss(cos, torch.tensor([1.0, 0.0, 0.5])))
    with pytest.raises(ValueError, match=r"row 2 is 5.5, outside \[0.0, 5.0\]"):
        head.check_labels([1.0, 2.0, 5.5])
    with pytest.raises(ValueError, match="row 0 is nan"):
        head.check_labels([float("nan")])


def test_contrastive_head_is_infonce_over_in_batch_negatives():
    torch.manual_seed(0)
    head = ContrastiveHead(8, temperature=0.1)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.1
    torch.testing.assert_close(head.loss(a, b, None), F.cross_entropy(logits, torch.arange(5)))
    aligned = torch.eye(5, 8) * 3
    assert head.loss(aligned, aligned).item() < 1e-3  # each positive is the only similar one
    assert not head.needs_labels and RegressionHead.needs_labels and ClassificationHead.needs_labels
    with pytest.raises(TypeError, match="takes no labels"):
        head.check_labels([1.0] * 5)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveHead(8, temperature=0.0)


@pytest.mark.parametrize(
    "kind,config",
    [("single", {"num_labels": 3}), ("pair", {"num_labels": 2}), ("regression", {"proj_dim": 6}),
     ("contrastive", {"temperature": 0.2, "proj_dim": 4})],
)
def test_heads_save_and_load(kind, config, tmp_path):
    torch.manual_seed(1)
    head = make_head(kind, 8, **config)
    head.save(tmp_path / "glot_head")
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    # one loader: the head folder itself or the model folder holding glot_head/
    for path in (tmp_path / "glot_head", tmp_path, str(tmp_path)):
        loaded = load_head(path)
        assert type(loaded) is type(head) and loaded.config == head.config
        assert torch.equal(loaded.predict(a, b), head.predict(a, b))
    assert heads_load_head is load_head and glot_st.train.load_head is load_head


def test_load_head_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved head in"):
        load_head(tmp_path)
    folder = tmp_path / "h"
    make_head("single", 4, num_labels=2).save(folder)
    config, weights = folder / "glot_head.json", folder / "glot_head.safetensors"
    good = config.read_text()

    config.write_text("{not json")
    with pytest.raises(ValueError, match=r"glot_head\.json.*not valid JSON"):
        load_head(folder)
    config.write_text(json.dumps({"kind": "single", "num_labels": 2}))
    with pytest.raises(ValueError, match=r"glot_head\.json.* has no 'dim'"):
        load_head(folder)
    config.write_text(json.dumps({"kind": "nope", "dim": 4}))
    with pytest.raises(ValueError, match=r"glot_head\.json.*unknown head kind 'nope'"):
        load_head(folder)
    config.write_text(json.dumps({"kind": "single", "dim": 4, "bogus": 1}))
    with pytest.raises(ValueError, match=r"glot_head\.json.*invalid"):
        load_head(folder)
    config.write_text(json.dumps({"kind": "single", "dim": 5, "num_labels": 2}))  # weights are for dim 4
    with pytest.raises(ValueError, match=r"glot_head\.safetensors.*does not fit"):
        load_head(folder)
    config.write_text(good)
    weights.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"glot_head\.safetensors"):
        load_head(folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"glot_head\.safetensors"):
        load_head(folder)


def test_unknown_head_kind():
    with pytest.raises(ValueError, match="unknown head kind 'nope'"):
        make_head("nope", 8)


# ------------------------------------------------------------------------------------------------ training

@pytest.fixture(scope="module")
def model(minilm_dir):
    """A private Transformer + small GLOT model (tests here train it; each resets it first)."""
    torch.manual_seed(0)
    return glot_st.from_backbone(minilm_dir, max_seq_length=32, device="cpu", hidden_dim=16, num_layers=1)


@pytest.fixture(scope="module")
def initial_state(model):
    return {k: v.clone() for k, v in model[1].state_dict().items()}


@pytest.fixture()
def fresh(model, initial_state):
    model[1].load_state_dict(initial_state)
    return model


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("train_cache")


@pytest.fixture(scope="module")
def stsb():
    return load_split("stsb", "train", limit=24), load_split("stsb", "dev", limit=16)


def run(model, train, dev, cache_root, **kwargs):
    """The loop's mechanics without the recipe's validation slice (tested on its own below)."""
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("validation_fraction", 0.0)
    return train_cached(model, train, dev, cache_dir=cache_root, show_progress_bar=False, **kwargs)


def test_same_seed_gives_bitwise_equal_weights(fresh, initial_state, stsb, cache_root):
    first = run(fresh, *stsb, cache_root, seed=3)
    weights = {k: v.clone() for k, v in fresh[1].state_dict().items()}
    head_weights = {k: v.clone() for k, v in first.head.state_dict().items()}

    fresh[1].load_state_dict(initial_state)
    second = run(fresh, *stsb, cache_root, seed=3)
    assert all(torch.equal(weights[k], v) for k, v in fresh[1].state_dict().items())
    assert all(torch.equal(head_weights[k], v) for k, v in second.head.state_dict().items())
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    assert first.metric_name == "spearman" and first.selection_metric is None and len(first.history) == 2
    assert set(first.history[0]) == {"epoch", "loss", "validation_metric", "eval_metric", "seconds", "eval_seconds"}
    assert any(not torch.equal(initial_state[k], v) for k, v in weights.items())  # it did train

    fresh[1].load_state_dict(initial_state)
    run(fresh, *stsb, cache_root, seed=4, epochs=1)
    assert any(not torch.equal(weights[k], v) for k, v in fresh[1].state_dict().items())


def test_best_checkpoint_is_restored(fresh, stsb, cache_root, monkeypatch):
    scores = iter([0.1, 0.9, 0.2])
    snapshots = []

    def scripted(pooler, head, *args, **kwargs):
        snapshots.append(({k: v.clone() for k, v in pooler.state_dict().items()},
                          {k: v.clone() for k, v in head.state_dict().items()}))
        return next(scores)

    monkeypatch.setattr(training_mod, "_evaluate", scripted)
    train, dev = stsb
    result = run(fresh, train, None, cache_root, validation_split=dev, epochs=3)
    assert result.best_epoch == 2 and result.validation_metric == 0.9 and result.eval_metric is None
    assert [h["validation_metric"] for h in result.history] == [0.1, 0.9, 0.2]
    pooler_best, head_best = snapshots[1]
    assert all(torch.equal(pooler_best[k], v) for k, v in fresh[1].state_dict().items())
    assert all(torch.equal(head_best[k], v) for k, v in result.head.state_dict().items())
    assert any(not torch.equal(snapshots[2][0][k], v) for k, v in fresh[1].state_dict().items())


def test_patience_stops_and_the_eval_split_never_selects(fresh, stsb, cache_root, monkeypatch):
    # per epoch: the validation score, then the eval score (the eval split peaks where validation does not)
    scores = iter([0.5, 0.1, 0.7, 0.2, 0.6, 0.9, 0.65, 0.3, 0.69, 0.3, 0.99, 0.99])
    monkeypatch.setattr(training_mod, "_evaluate", lambda *args, **kwargs: next(scores))
    train, dev = stsb
    result = run(fresh, train, dev, cache_root, validation_split=dev, epochs=8, patience=3)
    assert [h["validation_metric"] for h in result.history] == [0.5, 0.7, 0.6, 0.65, 0.69]
    assert [h["eval_metric"] for h in result.history] == [0.1, 0.2, 0.9, 0.3, 0.3]
    assert result.best_epoch == 2 and result.eval_metric == 0.2  # not epoch 3, where the eval split peaks
    assert result.stopped_early and len(result.history) == 5


def test_validation_slice_is_carved_from_train_disjoint_and_fixed(fresh, stsb, cache_root, monkeypatch):
    seen = {}
    real = training_mod._cache_split

    def spy(model, split, head, role, *args):
        seen[role] = split
        return real(model, split, head, role, *args)

    monkeypatch.setattr(training_mod, "_cache_split", spy)
    train, dev = stsb
    result = train_cached(fresh, train, dev, cache_dir=cache_root, epochs=1, batch_size=8, show_progress_bar=False,
                          validation_fraction=0.25, seed=1)
    rows = lambda split: list(zip(split.texts_a, split.texts_b, split.labels))  # noqa: E731
    fitted, validation = rows(seen["train"]), rows(seen["validation"])
    assert len(validation) == result.validation_rows == round(0.25 * len(train))
    assert sorted(fitted + validation) == sorted(rows(train))  # a partition of the training rows
    assert not set(validation) & set(rows(dev)) and seen["eval"] is dev
    assert result.metric_name == result.selection_metric == "spearman" and result.validation_metric is not None
    first = [r for r in validation]
    seen.clear()
    train_cached(fresh, train, dev, cache_dir=cache_root, epochs=1, batch_size=8, show_progress_bar=False,
                 validation_fraction=0.25, seed=7)
    assert rows(seen["validation"]) == first  # the same slice whatever the training seed


def test_save_and_reload_model_and_head(fresh, stsb, cache_root, tmp_path):
    out = tmp_path / "trained"
    result = run(fresh, *stsb, cache_root, epochs=1, output_dir=out, validation_fraction=0.25)
    reloaded = glot_st.load(str(out), device="cpu")
    sentences = stsb[1].texts_a[:4]
    np.testing.assert_allclose(reloaded.encode(sentences), fresh.encode(sentences), atol=1e-6)
    head = load_head(out)
    a, b = torch.randn(3, head.dim), torch.randn(3, head.dim)
    assert torch.equal(head.predict(a, b), result.head.predict(a, b))
    assert (out / "glot_training.json").is_file()
    card = (out / "README.md").read_text(encoding="utf-8")  # the card states the task, metric and configuration
    assert "#### Training" in card and "Task: `stsb`" in card
    assert f"`{result.selection_metric}` = {result.validation_metric:.4f}" in card  # the validation metric
    assert "train-validation" in card and json.loads((out / "modules.json").read_text())[1]["type"] == "glot_modeling.GLOT"
    assert "#### GLOT configuration" in card and f"| `hidden_dim` | `{fresh[1].hidden_dim}` |" in card


def test_regression_head_trains_on_scores_scaled_once(fresh, stsb, cache_root, monkeypatch):
    train = stsb[0]
    seen = []
    real_loss = RegressionHead.loss

    def spy(self, z_a, z_b, targets):
        seen.append(targets.detach().cpu().clone())
        return real_loss(self, z_a, z_b, targets)

    monkeypatch.setattr(RegressionHead, "loss", spy)
    run(fresh, train, None, cache_root, epochs=1, batch_size=8, bucket_size=0)
    got = torch.sort(torch.cat(seen)).values
    want = torch.sort(torch.tensor(train.labels, dtype=torch.float32) / 5.0).values
    torch.testing.assert_close(got, want)  # score / 5 in [0, 1], not score / 25
    assert got.max() > 0.5


def test_backbone_hashed_once_and_texts_validated_once(fresh, stsb, cache_root, monkeypatch):
    import glot_st.train.cache.keys as keys_mod
    import glot_st.train.cache.store as cache_mod

    hashed, validated = [], []
    real_identity, real_validate = keys_mod.backbone_identity, cache_mod.validate_texts

    def identity(model):
        hashed.append(1)
        return real_identity(model)

    def validate(texts, *, name="texts"):
        validated.append(name)
        return real_validate(texts, name=name)

    monkeypatch.setattr(training_mod, "backbone_identity", identity)
    monkeypatch.setattr(keys_mod, "backbone_identity", identity)
    monkeypatch.setattr(training_mod, "validate_texts", validate)
    monkeypatch.setattr(cache_mod, "validate_texts", validate)
    run(fresh, *stsb, cache_root, epochs=1)
    assert len(hashed) == 1  # one weights digest for the train and the eval cache
    assert len(validated) == 4, validated  # texts_a and texts_b of each split, once


def test_device_argument_leaves_the_pooler_where_it_was(fresh, stsb, cache_root, monkeypatch):
    pooler = fresh[1]
    home = next(pooler.parameters()).device
    moves = []
    real_to = type(pooler).to

    def spy(self, *args, **kwargs):
        if self is pooler:
            moves.append(torch.device(args[0]) if args else kwargs.get("device"))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(type(pooler), "to", spy)
    run(fresh, *stsb, cache_root, epochs=1, device="cpu")
    assert moves == [torch.device("cpu"), home]  # moved to the run device, then back home
    moves.clear()

    def boom(*args, **kwargs):
        raise FloatingPointError("boom")

    monkeypatch.setattr(training_mod, "_evaluate", boom)
    with pytest.raises(FloatingPointError, match="boom"):
        run(fresh, *stsb, cache_root, epochs=1, device="cpu")
    assert moves[-1] == home  # restored on errors too


def test_pair_classification_and_baseline_pooler(fresh, cache_root):
    train, dev = load_split("mrpc", "train", limit=16), load_split("mrpc", "dev", limit=8)
    result = run(fresh, train, dev, cache_root, epochs=1)
    assert result.metric_name == "f1" and result.head.kind == "pair"
    cola_train, cola_dev = load_split("cola", "train", limit=16), load_split("cola", "dev", limit=8)
    mean = make_pooler("mean", 384)  # no parameters: only the head trains
    result = run(fresh, cola_train, cola_dev, cache_root, epochs=1, pooler=mean)
    assert result.trainable_parameters == 384 * 2 + 2 and result.metric_name == "mcc"


def test_contrastive_head_on_pairs(fresh, stsb, cache_root):
    result = run(fresh, *stsb, cache_root, epochs=1, head_kind="contrastive", head_config={"temperature": 0.05})
    assert result.head.kind == "contrastive" and result.metric_name == "spearman"
    with pytest.raises(ValueError, match="contrastive head predicts cosine"):
        run(fresh, load_split("mrpc", "train", limit=8), load_split("mrpc", "dev", limit=8), cache_root,
            head_kind="contrastive")


def test_mismatched_data_names_the_row_or_column(fresh, cache_root):
    single = TextSplit("sst2", "train", ["good", "bad"], None, [1, 0])
    with pytest.raises(ValueError, match="column texts_b is None but the 'pair' head"):
        run(fresh, single, None, cache_root, head_kind="pair")
    pairs = TextSplit("sst2", "train", ["good", "bad"], ["x", "y"], [1, 0])
    with pytest.raises(ValueError, match="column texts_b is given"):
        run(fresh, pairs, None, cache_root)
    empty = TextSplit("mrpc", "train", ["a", "b", "c", "d"], ["a", "b", "c", ""], [1, 0, 1, 0])
    with pytest.raises(ValueError, match="column texts_b: row 3 is empty"):
        run(fresh, empty, None, cache_root)
    none = TextSplit("cola", "train", ["a", None], None, [1, 0])
    with pytest.raises(ValueError, match="column texts_a: row 1 is None"):
        run(fresh, none, None, cache_root)
    bad_label = TextSplit("cola", "train", ["a", "b", "c"], None, [1, 0, 2])
    with pytest.raises(ValueError, match=r"column labels: label at row 2 is 2, outside \[0, 2\)"):
        run(fresh, bad_label, None, cache_root)
    bad_score = TextSplit("stsb", "train", ["a", "b"], ["c", "d"], [1.0, 7.0])
    with pytest.raises(ValueError, match=r"row 1 is 7.0, outside"):
        run(fresh, bad_score, None, cache_root)
    with pytest.raises(ValueError, match="eval split is task 'cola'"):
        run(fresh, bad_score, bad_label, cache_root)
