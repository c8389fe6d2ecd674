"""sentence-transformers' own trainer (and ``model.fit``) on a Transformer + GLOT model with a frozen backbone."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import InputExample, SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

import glot_st
from glot_st.train.data import load_split
from glot_st.train.st_trainer import prepare_for_st_trainer


@pytest.fixture()
def model(minilm_dir):
    torch.manual_seed(0)
    model = glot_st.from_backbone(minilm_dir, max_seq_length=32, device="cpu", hidden_dim=16, num_layers=1)
    trainable = prepare_for_st_trainer(model)
    assert trainable and all(name.startswith("1.") for name in trainable)  # only GLOT trains
    return model


def states(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def check_trained(model, backbone_before, glot_before):
    assert all(torch.equal(backbone_before[k], v) for k, v in model[0].state_dict().items()), "backbone changed"
    assert any(not torch.equal(glot_before[k], v) for k, v in model[1].state_dict().items()), "GLOT did not train"
    assert not model[0].training  # the frozen backbone stayed in eval mode (no dropout)


def train(model, dataset, loss, output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
        report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, disable_tqdm=True,
    )
    settings.update(overrides)
    args = SentenceTransformerTrainingArguments(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()


def test_cosine_similarity_loss_on_stsb_trains_glot_only_and_reloads(model, tmp_path):
    split = load_split("stsb", "train", limit=16)
    dataset = Dataset.from_dict(
        {"sentence1": split.texts_a, "sentence2": split.texts_b, "score": [s / 5 for s in split.labels]}
    )
    backbone, glot = states(model[0]), states(model[1])
    # save a checkpoint on the way: the trainer saves the frozen model through sentence-transformers
    train(model, dataset, losses.CosineSimilarityLoss(model), tmp_path / "run", save_strategy="steps", save_steps=2)
    check_trained(model, backbone, glot)
    checkpoint = glot_st.load(str(tmp_path / "run" / "checkpoint-2"), device="cpu")
    for name, value in checkpoint[1].state_dict().items():
        assert torch.equal(value, model[1].state_dict()[name])
    model.save(str(tmp_path / "final"))
    reloaded = glot_st.load(str(tmp_path / "final"), device="cpu")
    np.testing.assert_allclose(reloaded.encode(split.texts_a[:4]), model.encode(split.texts_a[:4]), atol=1e-6)


def test_multiple_negatives_ranking_loss_on_pairs(model, tmp_path):
    split = load_split("stsb", "train", limit=16)
    dataset = Dataset.from_dict({"anchor": split.texts_a, "positive": split.texts_b})
    backbone, glot = states(model[0]), states(model[1])
    train(model, dataset, losses.MultipleNegativesRankingLoss(model), tmp_path)
    check_trained(model, backbone, glot)


def test_softmax_loss_for_pair_classification(model, tmp_path):
    split = load_split("mrpc", "train", limit=16)
    dataset = Dataset.from_dict({"sentence1": split.texts_a, "sentence2": split.texts_b, "label": split.labels})
    backbone, glot = states(model[0]), states(model[1])
    dim = model.get_sentence_embedding_dimension()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            loss = losses.SoftmaxLoss(model, embedding_dimension=dim, num_labels=2)
        except TypeError:  # sentence-transformers 5 argument name
            loss = losses.SoftmaxLoss(model, sentence_embedding_dimension=dim, num_labels=2)
    train(model, dataset, loss, tmp_path)
    check_trained(model, backbone, glot)


def test_model_fit_if_available(model, tmp_path):
    if not hasattr(model, "fit"):
        pytest.skip("this sentence-transformers has no model.fit")
    split = load_split("stsb", "train", limit=16)
    examples = [InputExample(texts=[a, b], label=s / 5) for a, b, s in zip(split.texts_a, split.texts_b, split.labels)]
    loader = torch.utils.data.DataLoader(examples, shuffle=True, batch_size=8)
    backbone, glot = states(model[0]), states(model[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(
            train_objectives=[(loader, losses.CosineSimilarityLoss(model))], epochs=1, optimizer_params={"lr": 1e-2},
            show_progress_bar=False, output_path=str(tmp_path / "fit"),
        )
    check_trained(model, backbone, glot)
    reloaded = glot_st.load(str(tmp_path / "fit"), device="cpu")
    assert type(reloaded[1]).__name__ == "GLOT"
