"""Cache safety: concurrent builders, tokenizer settings in the key, damaged folders named and repaired."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from glot_st.train.cache import build_cache, cache_key, open_cache

MAX_LEN = 16
TEXTS = [f"sentence number {i} has a few words and then some more words to pass sixteen tokens" for i in range(12)]
TEXTS += ["short one", "another short text"]


@pytest.fixture(scope="module")
def st_model(minilm_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    model.eval()
    return model


@pytest.fixture(scope="module")
def built(st_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    return build_cache(st_model, TEXTS, folder, dtype="float32", shard_size=8, show_progress_bar=False)


def all_rows(cache) -> tuple[torch.Tensor, torch.Tensor]:
    return cache.get_batch(list(range(len(cache))))


def test_truncation_side_is_part_of_the_key(st_model, built):
    tokenizer = st_model.tokenizer
    assert max(len(ids) for ids in tokenizer(TEXTS)["input_ids"]) > MAX_LEN  # truncation really happens
    before = tokenizer.truncation_side
    try:
        tokenizer.truncation_side = "left" if before == "right" else "right"
        assert cache_key(st_model, TEXTS) != built.key
        with pytest.raises(ValueError, match="truncation_side"):
            build_cache(st_model, TEXTS, built.directory, dtype="float32", shard_size=8, show_progress_bar=False)
        with pytest.raises(ValueError, match="truncation_side"):
            open_cache(built.directory, st_model, TEXTS)
    finally:
        tokenizer.truncation_side = before
    open_cache(built.directory, st_model, TEXTS)  # the original settings match again


def test_a_truncated_shard_names_its_file_and_overwrite_repairs_it(st_model, built, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(built.directory, folder)
    shard = folder / "shard_00001.npy"
    shard.write_bytes(shard.read_bytes()[:-512])
    with pytest.raises(ValueError, match="shard_00001.npy"):
        all_rows(open_cache(folder))
    with pytest.raises(ValueError, match="damaged.*shard 1"):
        build_cache(st_model, TEXTS, folder, dtype="float32", shard_size=8, show_progress_bar=False)
    repaired = build_cache(
        st_model, TEXTS, folder, dtype="float32", shard_size=8, overwrite=True, show_progress_bar=False
    )
    for got, want in zip(all_rows(repaired), all_rows(built)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_corrupt_manifest_names_its_file_and_overwrite_repairs_it(st_model, built, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(built.directory, folder)
    (folder / "manifest.json").write_text('{"format_version": 2, "key": ')
    with pytest.raises(ValueError, match="manifest.json"):
        open_cache(folder)
    with pytest.raises(ValueError, match="manifest.json"):
        build_cache(st_model, TEXTS, folder, dtype="float32", shard_size=8, show_progress_bar=False)
    repaired = build_cache(
        st_model, TEXTS, folder, dtype="float32", shard_size=8, overwrite=True, show_progress_bar=False
    )
    for got, want in zip(all_rows(repaired), all_rows(built)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.slow
def test_two_processes_building_one_folder_both_succeed(minilm_dir, built, tmp_path):
    folder = tmp_path / "shared"
    script = textwrap.dedent(
        f"""
        import sys
        from sentence_transformers import SentenceTransformer
        from glot_st.train.cache import build_cache
        model = SentenceTransformer({minilm_dir!r}, device="cpu")
        model.max_seq_length = {MAX_LEN}
        texts = {TEXTS!r}
        cache = build_cache(model, texts, {str(folder)!r}, dtype="float32", shard_size=2, batch_size=2,
                            show_progress_bar=False)
        print(len(cache))
        """
    )
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-3000:]
        assert out.strip().splitlines()[-1] == str(len(TEXTS))
    assert not [p.name for p in folder.iterdir() if ".tmp" in p.name]  # no temporary file left behind
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_shards"] == 7
    cache = open_cache(folder)
    states, mask = all_rows(cache)
    want_states, want_mask = all_rows(built)
    assert torch.equal(mask, want_mask)
    np.testing.assert_allclose(states.numpy(), want_states.numpy(), rtol=0, atol=1e-5)  # other batch padding
