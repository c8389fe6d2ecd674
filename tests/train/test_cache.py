"""The token-state cache: round trip, identity key refusals, resumability, batched reads, the sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import glot_st.train.cache as cache_pkg
import glot_st.train.cache.keys as keys_mod
import glot_st.train.cache.store as cache_mod
from glot_st.train.cache import LengthBucketBatchSampler, TokenCache, build_cache, iter_cached_batches, open_cache
from glot_st.train.data import load_split

MAX_LEN = 32


@pytest.fixture(scope="module")
def st_model(minilm_dir):
    """A private MiniLM SentenceTransformer truncating at 32 tokens, in eval mode."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    model.eval()
    return model


@pytest.fixture(scope="module")
def texts():
    split = load_split("stsb", "train", limit=20)
    return split.texts_a + split.texts_b  # 40 sentences, some longer than 32 tokens? (truncated if so)


@pytest.fixture(scope="module")
def built32(st_model, texts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache32")
    # batch_size == shard_size: each shard is one forward pass, so a direct forward of the same 16 texts
    # runs the very same computation (same padded length) and must agree to float32 round-off
    return build_cache(st_model, texts, folder, dtype="float32", shard_size=16, batch_size=16, show_progress_bar=False)


@torch.no_grad()
def direct(model, batch_texts):
    """Direct backbone forward: token states (B, L, d) and mask (B, L)."""
    features = model.preprocess(batch_texts)
    out = model[0](features)
    return out["token_embeddings"], out["attention_mask"]


@pytest.fixture(scope="module")
def reference_rows(st_model, texts):
    """Per text: its real-token states (n_i, d) from a direct forward of its 16-text shard."""
    rows = []
    for lo in range(0, len(texts), 16):
        states, mask = direct(st_model, texts[lo : lo + 16])
        rows.extend(states[j][mask[j].bool()] for j in range(states.shape[0]))
    return rows


def test_float32_round_trip_equals_direct_forward(st_model, texts, built32, reference_rows):
    assert len(built32) == len(texts) and built32.hidden_dim == 384
    assert built32.manifest["num_shards"] == 3 and built32.manifest["complete"]
    for idx in ([0, 5, 39], [17, 16, 15, 14], list(range(40))):
        states, mask = built32.get_batch(idx)
        assert states.dtype == torch.float32 and mask.dtype == torch.long
        lengths = [reference_rows[i].shape[0] for i in idx]
        assert states.shape == (len(idx), max(lengths), 384)
        assert mask.sum(1).tolist() == lengths and torch.all(states[mask == 0] == 0)
        for b, i in enumerate(idx):
            torch.testing.assert_close(states[b, : lengths[b]], reference_rows[i], atol=1e-6, rtol=0)
    # another batch composition pads differently: equal up to float round-off of the attention
    states, mask = built32.get_batch([3, 30, 12])
    ref, ref_mask = direct(st_model, [texts[i] for i in (3, 30, 12)])
    assert torch.equal(mask, ref_mask.long())
    torch.testing.assert_close(states * mask[..., None], ref * ref_mask[..., None], atol=1e-4, rtol=1e-4)


def test_cache_matches_model_encode(st_model, texts, built32):
    encoded = st_model.encode(texts[:3], output_value="token_embeddings", convert_to_numpy=False)
    for i, tokens in enumerate(encoded):
        states, mask = built32.get_batch([i])
        n = int(mask.sum())
        assert n == tokens.shape[0]
        torch.testing.assert_close(states[0, :n], tokens.float(), atol=1e-4, rtol=1e-4)


def test_float16_round_trip_within_half_precision(st_model, texts, tmp_path):
    cache = build_cache(st_model, texts[:10], tmp_path, dtype="float16", shard_size=4, show_progress_bar=False)
    assert np.load(tmp_path / "shard_00000.npy", mmap_mode="r").dtype == np.float16
    states, mask = cache.get_batch(range(10))
    ref, ref_mask = direct(st_model, texts[:10])
    assert torch.equal(mask, ref_mask.long())
    torch.testing.assert_close(states * mask[..., None], ref * ref_mask[..., None], atol=2e-3, rtol=2e-3)


def test_flat_layout_without_padding(built32):
    offsets = np.load(built32.directory / "shard_00000_offsets.npy")
    flat = np.load(built32.directory / "shard_00000.npy")
    assert offsets.shape == (17,) and offsets[0] == 0 and flat.shape == (offsets[-1], 384)
    assert flat.shape[0] == int(built32.lengths[:16].sum())  # no padding rows on disk


def tiny_random_bert(tokenizer_dir, folder):
    """A random 1-layer BertModel with MiniLM's tokenizer, as a SentenceTransformer."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    try:
        from sentence_transformers.base.modules import Transformer
    except ImportError:
        from sentence_transformers.models import Transformer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformer = Transformer(str(folder), max_seq_length=MAX_LEN)
    return SentenceTransformer(modules=[transformer], device="cpu")


def test_refuses_other_backbone(minilm_dir, texts, built32, tmp_path):
    other = tiny_random_bert(minilm_dir, tmp_path / "bert")
    with pytest.raises(ValueError, match="backbone differs") as info:
        open_cache(built32.directory, other, texts)
    assert "max_seq_length" not in str(info.value) and "texts differ" not in str(info.value)
    with pytest.raises(ValueError, match="backbone differs"):
        build_cache(other, texts, built32.directory, dtype="float32", shard_size=16, show_progress_bar=False)


def test_refuses_other_max_seq_length(minilm_dir, texts, built32):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_dir, device="cpu")
    model.max_seq_length = 16
    with pytest.raises(ValueError, match=r"max_seq_length differs \(cache 32, model 16\)") as info:
        open_cache(built32.directory, model, texts)
    assert "backbone" not in str(info.value)


def test_refuses_other_texts(st_model, texts, built32):
    with pytest.raises(ValueError, match="texts differ") as info:
        open_cache(built32.directory, st_model, texts[:-1] + ["A completely different sentence."])
    assert "backbone" not in str(info.value) and "max_seq_length" not in str(info.value)
    open_cache(built32.directory, st_model, texts)  # the right key opens


def test_empty_and_none_texts_name_the_row(st_model, tmp_path):
    with pytest.raises(ValueError, match="row 1 is empty"):
        build_cache(st_model, ["fine", "", "ok"], tmp_path, show_progress_bar=False)
    with pytest.raises(ValueError, match="row 2 is None"):
        build_cache(st_model, ["fine", "ok", None], tmp_path, show_progress_bar=False)
    with pytest.raises(ValueError, match="row 0 is empty"):
        build_cache(st_model, ["   "], tmp_path, show_progress_bar=False)


def test_resume_after_interrupt(st_model, texts, built32, tmp_path, monkeypatch):
    real = cache_mod._encode_shard
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(kwargs["first_row"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user hits Ctrl-C while the second shard runs
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "_encode_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(st_model, texts, tmp_path, dtype="float32", shard_size=16, batch_size=16, show_progress_bar=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == ["0"] and not manifest["complete"]
    with pytest.raises(ValueError, match=r"unfinished: shards \[1, 2\] missing"):
        TokenCache(tmp_path)

    calls.clear()
    monkeypatch.setattr(cache_mod, "_encode_shard", lambda *a, **k: (calls.append(k["first_row"]), real(*a, **k))[1])
    resumed = build_cache(
        st_model, texts, tmp_path, dtype="float32", shard_size=16, batch_size=16, show_progress_bar=False
    )
    assert calls == [16, 32]  # only the unfinished shards ran
    everything = list(range(len(texts)))
    for got, want in zip(resumed.get_batch(everything), built32.get_batch(everything)):
        assert torch.equal(got, want)

    calls.clear()
    build_cache(st_model, texts, tmp_path, dtype="float32", shard_size=16, show_progress_bar=False)
    assert calls == []  # a finished cache is reused as is
    assert not list(tmp_path.glob("*.tmp"))


def test_layout_mismatch_refused_unless_overwrite(st_model, texts, built32, tmp_path):
    small = build_cache(st_model, texts[:4], tmp_path, dtype="float32", shard_size=16, show_progress_bar=False)
    with pytest.raises(ValueError, match="dtype differs"):
        build_cache(st_model, texts[:4], small.directory, dtype="float16", shard_size=16, show_progress_bar=False)
    again = build_cache(
        st_model, texts[:4], small.directory, dtype="float16", shard_size=16, overwrite=True, show_progress_bar=False
    )
    assert again.dtype == "float16"


def test_batches_open_each_shard_memmap_once(built32, monkeypatch):
    opened = []
    real_load = np.load

    def counting_load(path, *args, **kwargs):
        if kwargs.get("mmap_mode"):
            opened.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    cache = TokenCache(built32.directory)
    sampler = LengthBucketBatchSampler(cache.lengths, batch_size=8, seed=3, bucket_size=16)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for _, states, mask in iter_cached_batches(cache, sampler):
            assert states.shape[:2] == mask.shape and states.shape[1] == int(mask.sum(1).max())
    assert len(opened) == 3 == cache.memmap_opens  # 3 shards, each memmapped once for 15 batches
    assert len(set(opened)) == 3


def test_get_batch_rejects_bad_rows(built32):
    with pytest.raises(IndexError, match="row 40 out of range"):
        built32.get_batch([0, 40])


def test_sampler_is_deterministic_and_covers_every_item():
    lengths = np.random.default_rng(0).integers(1, 50, size=103)
    a = LengthBucketBatchSampler(lengths, 8, seed=5, bucket_size=32)
    b = LengthBucketBatchSampler(lengths, 8, seed=5, bucket_size=32)
    first = list(a)
    assert first == list(b) and len(first) == len(a) == 13
    assert sorted(i for batch in first for i in batch) == list(range(103))
    for batch in first:  # sorted by length inside each bucket, so each batch is too
        assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)
    a.set_epoch(1)
    assert list(a) != first
    assert list(LengthBucketBatchSampler(lengths, 8, seed=6, bucket_size=32)) != first
    plain = list(LengthBucketBatchSampler(lengths, 10, shuffle=False, drop_last=True))
    assert plain[0] == list(range(10)) and len(plain) == 10


def test_weight_digest_samples_big_models_with_a_stride(monkeypatch):
    torch.manual_seed(0)
    layer = torch.nn.Linear(300, 400)  # 120k weights > the 65,536-element sample
    full = keys_mod._weights_digest(layer)
    monkeypatch.setattr(keys_mod, "_FULL_HASH_LIMIT_BYTES", 0)  # pretend the model is big
    strided = keys_mod._weights_digest(layer)
    assert strided != full and strided == keys_mod._weights_digest(layer)
    with torch.no_grad():
        layer.weight.view(-1)[0] += 1.0  # a sampled element (the first)
    assert keys_mod._weights_digest(layer) != strided
    with torch.no_grad():
        layer.weight.view(-1)[0] -= 1.0
        layer.bias[0] += 1.0  # small parameters are sampled completely
    assert keys_mod._weights_digest(layer) != strided


def test_weight_digest_samples_on_the_device_before_copying(monkeypatch):
    torch.manual_seed(0)
    layer = torch.nn.Linear(300, 400)
    monkeypatch.setattr(keys_mod, "_FULL_HASH_LIMIT_BYTES", 0)
    # the sample is the one the old copy-then-sample code hashed: cache keys stay the same
    flat = layer.weight.detach().to("cpu").contiguous().reshape(-1)
    stride = -(-flat.numel() // keys_mod._SAMPLE_ELEMENTS)
    old = torch.cat([flat[::stride], flat[-1:]]).contiguous().view(torch.uint8).numpy().tobytes()
    assert keys_mod._tensor_bytes(layer.weight, sample=True) == old

    copied = []
    real_cpu, real_to = torch.Tensor.cpu, torch.Tensor.to

    def cpu(self, *args, **kwargs):
        copied.append(self.numel())
        return real_cpu(self, *args, **kwargs)

    def to(self, *args, **kwargs):
        if args and str(args[0]) == "cpu":
            copied.append(self.numel())
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    monkeypatch.setattr(torch.Tensor, "to", to)
    keys_mod._weights_digest(layer)
    assert copied and max(copied) <= keys_mod._SAMPLE_ELEMENTS + 1  # never the whole 120k-element weight


def test_encode_shard_copies_once_per_batch(st_model, texts, monkeypatch):
    calls = []
    real_cpu = torch.Tensor.cpu

    def cpu(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return real_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    states, offsets = cache_mod._encode_shard(
        st_model, texts[:12], first_row=0, batch_size=6, np_dtype=np.float32, device=torch.device("cpu"),
        progress=None,
    )
    assert len(calls) == 4  # states and mask of 2 batches, not one copy per text
    assert offsets.shape == (13,) and states.shape == (offsets[-1], 384)


def test_build_cache_moves_the_transformer_and_back(st_model, texts, tmp_path, monkeypatch):
    transformer = st_model[0]
    home = next(transformer.parameters()).device
    moves, seen = [], []
    real_to = type(transformer).to

    def spy(self, *args, **kwargs):
        if self is transformer:
            moves.append(torch.device(args[0]))
        return real_to(self, *args, **kwargs)

    real_encode = cache_mod._encode_shard

    def encode(*args, **kwargs):
        seen.append(list(moves))
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(type(transformer), "to", spy)
    monkeypatch.setattr(cache_mod, "_encode_shard", encode)
    build_cache(st_model, texts[:4], tmp_path / "a", device="cpu", show_progress_bar=False)
    assert seen == [[torch.device("cpu")]]  # the backbone is on the build device while encoding
    assert moves == [torch.device("cpu"), home]  # and back home afterwards

    moves.clear()
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("oom")

    monkeypatch.setattr(cache_mod, "_encode_shard", out_of_memory)
    with pytest.raises(RuntimeError, match="oom"):
        build_cache(st_model, texts[:4], tmp_path / "b", device="cpu", show_progress_bar=False)
    assert moves == [torch.device("cpu"), home]  # restored on errors too
    assert not transformer.training


def test_default_prompt_is_applied_and_keyed(minilm_dir, texts, built32, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        minilm_dir, device="cpu", prompts={"query": "query: "}, default_prompt_name="query"
    )
    model.max_seq_length = MAX_LEN
    assert cache_pkg.default_prompt(model) == "query: "
    cache = build_cache(model, texts[:3], tmp_path, dtype="float32", show_progress_bar=False)
    assert cache.key["prompt"] == "query: "
    encoded = model.encode(texts[:3], output_value="token_embeddings", convert_to_numpy=False)
    for i, tokens in enumerate(encoded):
        states, mask = cache.get_batch([i])
        assert int(mask.sum()) == tokens.shape[0] > built32.lengths[i]  # the prompt's tokens are in
        torch.testing.assert_close(states[0, : tokens.shape[0]], tokens.float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"default prompt differs \(cache None, model 'query: '\)"):
        open_cache(built32.directory, model, texts)
    assert cache_pkg.cache_key(model, texts) != built32.key


def test_preprocess_falls_back_to_tokenize():
    from types import SimpleNamespace

    old_style = SimpleNamespace(tokenize=lambda batch: {"texts": batch})  # sentence-transformers < 6
    assert keys_mod.preprocess(old_style, ["a", "b"], None) == {"texts": ["a", "b"]}
    assert keys_mod.preprocess(old_style, ["a"], "query: ") == {"texts": ["query: a"]}


def test_get_batch_index_types_and_storage_dtype(st_model, texts, built32, tmp_path):
    want_states, want_mask = built32.get_batch([3, 1])
    for indices in (np.array([3, 1], dtype=np.int32), torch.tensor([3, 1]), (3, 1)):
        states, mask = built32.get_batch(indices)
        assert torch.equal(states, want_states) and torch.equal(mask, want_mask)
    states, mask = built32.get_batch([])
    assert states.shape == (0, 0, 384) and mask.shape == (0, 0)
    with pytest.raises(IndexError, match=r"row -1 out of range \[0, 40\)"):
        built32.get_batch(np.array([2, -1]))
    with pytest.raises(TypeError, match="integers"):
        built32.get_batch([0.5])
    half = build_cache(st_model, texts[:6], tmp_path, dtype="float16", shard_size=4, show_progress_bar=False)
    states, mask = half.get_batch([5, 0])
    assert states.dtype == torch.float32 and mask.dtype == torch.long
    for b, i in enumerate((5, 0)):
        shard, local = divmod(i, 4)
        offsets = np.load(tmp_path / f"shard_{shard:05d}_offsets.npy")
        flat = np.load(tmp_path / f"shard_{shard:05d}.npy")
        stored = torch.from_numpy(flat[offsets[local] : offsets[local + 1]].astype(np.float32))
        assert torch.equal(states[b, : stored.shape[0]], stored) and torch.all(states[b, stored.shape[0] :] == 0)


def test_public_names():
    assert {"key_fingerprint", "default_prompt", "CACHE_DTYPES", "build_cache", "cache_key"} <= set(cache_pkg.__all__)
    assert all(hasattr(cache_pkg, name) for name in cache_pkg.__all__)
