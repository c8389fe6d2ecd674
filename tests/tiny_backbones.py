"""Tiny random backbones built offline for the tests: BERT-, Llama- and GPT-2-style Hugging Face folders.

Each folder holds a randomly initialised ``transformers`` model (a few thousand parameters) and a word-level
``tokenizers`` tokenizer over a small fixed vocabulary, so sentence-transformers' ``Transformer`` module
loads it like any Hub model, with nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "a an the and or of to in on at with for is are was were be it this that these those "
    "man woman child children dog cat horse bird people person someone nobody group "
    "plays playing played play guitar piano violin instrument music song sings singing "
    "eats eating food bread apple pizza drinks water coffee tea "
    "runs running walks walking park street road city house garden beach "
    "rides riding bike car bus train drives driving stadium "
    "weather lovely today sunny outside rain cold warm nice good bad great terrible "
    "reads book writes letter computer phone screen works office "
    "not very quite really sometimes always never . , ! ?"
).split()

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]"]


def make_tokenizer(style: str, model_max_length: int = 64):
    """A word-level fast tokenizer: ``[CLS] ... [SEP]`` for ``bert``, ``... [EOS]`` for decoder styles."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIALS + sorted(set(WORDS)))}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if style == "bert":
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    else:  # decoder-only: the last real token of every sentence is [EOS] (what last-token pooling reads)
        backend.post_processor = processors.TemplateProcessing(
            single="$A [EOS]", pair="$A [EOS] $B:1 [EOS]:1", special_tokens=[("[EOS]", vocab["[EOS]"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=model_max_length,
    )


def make_config(style: str, vocab_size: int, hidden: int = 32):
    """A tiny config: ``bert`` (absolute positions, bidirectional), ``llama`` (rotary, causal), ``gpt2``
    (learned absolute positions, causal)."""
    from transformers import BertConfig, GPT2Config, LlamaConfig

    common = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=4, eos_token_id=5)
    if style == "bert":
        return BertConfig(
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=2 * hidden,
            max_position_embeddings=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            **common,
        )
    if style == "llama":
        return LlamaConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            **common,
        )
    if style == "gpt2":
        return GPT2Config(
            n_embd=hidden,
            n_layer=2,
            n_head=4,
            n_positions=64,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    raise ValueError(f"unknown style {style!r}")


def save_tiny_backbone(folder: str | Path, style: str, seed: int = 0, hidden: int = 32) -> str:
    """Write a tiny random ``style`` model and its tokenizer to ``folder``; return the folder as a string."""
    from transformers import AutoModel

    folder = Path(folder)
    tokenizer = make_tokenizer(style)
    torch.manual_seed(seed)
    model = AutoModel.from_config(make_config(style, len(tokenizer), hidden))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
