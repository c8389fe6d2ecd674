"""Identity of a token-state cache: what a cache folder is valid for.

A cache is keyed by the backbone (model class, config, Transformer settings, tokenizer, weights), the
tokenizer's call-time settings (max_seq_length, truncation and padding side), the model's default prompt and
a sha256 of the texts. Opening a cache for anything else raises ``ValueError`` naming what differs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "backbone_identity",
    "cache_key",
    "default_prompt",
    "first_transformer",
    "key_differences",
    "key_fingerprint",
    "preprocess",
    "texts_digest",
    "tokenization_settings",
    "validate_texts",
]

# Above this many parameter bytes the weight digest samples every parameter with a stride instead of
# hashing all of its bytes.
_FULL_HASH_LIMIT_BYTES = 256 * 2**20
_SAMPLE_ELEMENTS = 1 << 16



def validate_texts(texts: Sequence[Any], *, name: str = "texts") -> list[str]:
    """Check that every entry is a non-empty string.

    Args:
        texts: sequence of length N; every entry must be a ``str`` with at least one non-space character.
        name: what to call the sequence in error messages (e.g. ``"texts_a"``).

    Returns:
        The texts as a ``list[str]`` of length N.

    Raises:
        ValueError: for a ``None``, empty or whitespace-only entry, naming its row (0-based index).
        TypeError: for a non-string entry, naming its row.
    """
    out = list(texts)
    for row, text in enumerate(out):
        if text is None:
            raise ValueError(f"{name}: row {row} is None; every text must be a non-empty string")
        if not isinstance(text, str):
            raise TypeError(f"{name}: row {row} is a {type(text).__name__}, not a str")
        if not text.strip():
            raise ValueError(f"{name}: row {row} is empty (or whitespace only); every text must be non-empty")
    return out


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 over the texts, in order, each prefixed by its UTF-8 byte length (so boundaries count).

    Args:
        texts: N strings (checked by the caller with :func:`validate_texts`; a non-string is a TypeError here).

    Returns:
        Hex digest string (64 characters).
    """
    digest = hashlib.sha256()
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text at row {row} is {type(text).__name__}, not str")
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor, sample: bool) -> bytes:
    flat = tensor.detach().reshape(-1)
    if sample and flat.numel() > _SAMPLE_ELEMENTS:
        stride = math.ceil(flat.numel() / _SAMPLE_ELEMENTS)
        # every stride-th element plus the last one, so both ends are covered; picked on the tensor's own
        # device so only the sample crosses to the host
        flat = torch.cat([flat[::stride], flat[-1:]])
    return flat.contiguous().cpu().view(torch.uint8).numpy().tobytes()


def _weights_digest(module: torch.nn.Module) -> str:
    state = module.state_dict()
    total = sum(t.numel() * t.element_size() for t in state.values())
    sample = total > _FULL_HASH_LIMIT_BYTES
    digest = hashlib.sha256(b"strided" if sample else b"full")
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        digest.update(_tensor_bytes(tensor, sample))
    return digest.hexdigest()


def _json_digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _tokenizer_digest(tokenizer: Any) -> str:
    if tokenizer is None:
        return "none"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        state = json.loads(backend.to_str())
        # truncation/padding are call-time settings the tokenizer keeps from its last call, not identity
        state.pop("truncation", None)
        state.pop("padding", None)
        return _json_digest([type(tokenizer).__name__, state])
    vocab = sorted(tokenizer.get_vocab().items())
    return _json_digest([type(tokenizer).__name__, vocab])


def first_transformer(model: torch.nn.Module) -> torch.nn.Module:
    """The ``Transformer`` module at ``model[0]``; ``TypeError`` naming what is there instead."""
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError) as exc:
        raise TypeError(
            f"expected a SentenceTransformer whose first module is a Transformer, got {type(model).__name__}"
        ) from exc
    if not hasattr(first, "auto_model"):
        raise TypeError(
            f"the model's first module is a {type(first).__name__}, not a sentence-transformers Transformer"
        )
    return first


def backbone_identity(model: torch.nn.Module) -> dict[str, str]:
    """Identity of the frozen backbone of a SentenceTransformer (its first module).

    Covers the Hugging Face model class, its config (without path and library version), the ST Transformer
    settings, the tokenizer and a digest of the weights (all bytes up to 256 MiB of parameters, above that a
    strided sample of every parameter). ``max_seq_length`` is keyed separately (see :func:`cache_key`).

    Args:
        model: a ``SentenceTransformer`` whose ``model[0]`` is a ``Transformer``.

    Returns:
        dict with ``model_class``, ``config_digest``, ``tokenizer_digest``, ``weights_digest`` (strings).
    """
    transformer = first_transformer(model)
    auto_model = transformer.auto_model
    config = auto_model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version"):
        config.pop(volatile, None)
    st_config = transformer.get_config_dict() if hasattr(transformer, "get_config_dict") else {}
    st_config = {k: v for k, v in st_config.items() if k != "max_seq_length"}
    st_config["do_lower_case"] = getattr(transformer, "do_lower_case", None)
    return {
        "model_class": f"{type(auto_model).__module__}.{type(auto_model).__qualname__}",
        "config_digest": _json_digest([config, st_config]),
        "tokenizer_digest": _tokenizer_digest(getattr(transformer, "tokenizer", None)),
        "weights_digest": _weights_digest(auto_model),
    }


def default_prompt(model: torch.nn.Module) -> str | None:
    """The prompt ``model.encode`` prepends when called without ``prompt`` / ``prompt_name``.

    Args:
        model: a ``SentenceTransformer`` (``default_prompt_name`` and ``prompts``).

    Returns:
        ``model.prompts[model.default_prompt_name]``, or ``None`` if no default prompt is set (or it is empty).

    Raises:
        ValueError: ``default_prompt_name`` is not a key of ``model.prompts``.
    """
    name = getattr(model, "default_prompt_name", None)
    if name is None:
        return None
    prompts = getattr(model, "prompts", None) or {}
    if name not in prompts:
        raise ValueError(f"default_prompt_name {name!r} is not one of the model's prompts {sorted(prompts)}")
    return prompts[name] or None


def preprocess(model: torch.nn.Module, texts: list[str], prompt: str | None) -> dict[str, Any]:
    """Tokenize a batch exactly as ``model.encode`` does, with ``prompt`` prepended.

    Returns:
        The feature dict of the model's tokenizer (``input_ids`` (B, L) int64, ``attention_mask`` (B, L), ...).
    """
    preprocess = getattr(model, "preprocess", None)
    if preprocess is not None:  # sentence-transformers >= 6
        return preprocess(texts, prompt=prompt) if prompt else preprocess(texts)
    # sentence-transformers < 6: tokenize() takes no prompt; encode() prepends it to every text
    return model.tokenize([prompt + text for text in texts] if prompt else texts)


def cache_key(
    model: torch.nn.Module, texts: Sequence[str], *, backbone: dict[str, str] | None = None
) -> dict[str, Any]:
    """The key a cache is valid for: backbone, tokenizer call settings, default prompt and texts.

    Args:
        model: ``SentenceTransformer`` with a ``Transformer`` first module.
        texts: the N texts to cache, already checked with :func:`validate_texts` (as :func:`build_cache`
            does before it computes a key).
        backbone: ``backbone_identity(model)`` if the caller already computed it (hashing the weights is the
            expensive part); ``None`` computes it.

    Returns:
        ``{"backbone": dict, "max_seq_length": int | None, "tokenization": dict, "prompt": str | None,
        "texts_sha256": str, "num_texts": int}``; ``tokenization`` holds the tokenizer's
        ``truncation_side``, ``padding_side`` and ``model_max_length``, which change the token states
        ``encode`` gives without changing the backbone.
    """
    return {
        "backbone": backbone_identity(model) if backbone is None else backbone,
        "max_seq_length": first_transformer(model).max_seq_length,
        "tokenization": tokenization_settings(model),
        "prompt": default_prompt(model),
        "texts_sha256": texts_digest(texts),
        "num_texts": len(texts),
    }


def tokenization_settings(model: torch.nn.Module) -> dict[str, Any]:
    """The tokenizer's call-time settings that change which tokens reach the backbone.

    Args:
        model: ``SentenceTransformer`` with a ``Transformer`` first module.

    Returns:
        ``{"truncation_side": str | None, "padding_side": str | None, "model_max_length": int | None}``.
    """
    tokenizer = getattr(first_transformer(model), "tokenizer", None)
    max_length = getattr(tokenizer, "model_max_length", None)
    return {
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "padding_side": getattr(tokenizer, "padding_side", None),
        # transformers uses a huge sentinel for "no limit": keep the key JSON-friendly
        "model_max_length": int(max_length) if isinstance(max_length, int) and max_length < 2**31 else None,
    }


def key_fingerprint(key: dict[str, Any]) -> str:
    """Short hex fingerprint of a :func:`cache_key` (to name cache folders)."""
    return _json_digest(key)[:16]


def key_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between a stored :func:`cache_key` and a wanted one, one sentence each (empty if equal)."""
    diffs = []
    if stored.get("backbone") != wanted["backbone"]:
        parts = [
            f"{field} {stored.get('backbone', {}).get(field, '?')[:16]} != {wanted['backbone'][field][:16]}"
            for field in wanted["backbone"]
            if stored.get("backbone", {}).get(field) != wanted["backbone"][field]
        ]
        diffs.append("backbone differs (" + "; ".join(parts) + ")")
    if stored.get("max_seq_length") != wanted["max_seq_length"]:
        diffs.append(f"max_seq_length differs (cache {stored.get('max_seq_length')}, model {wanted['max_seq_length']})")
    if stored.get("tokenization") != wanted["tokenization"]:
        diffs.append(
            f"tokenizer settings differ (cache {stored.get('tokenization')}, model {wanted['tokenization']})"
        )
    # caches written before prompts were keyed have no "prompt": they were built without one
    if stored.get("prompt") != wanted.get("prompt"):
        diffs.append(f"default prompt differs (cache {stored.get('prompt')!r}, model {wanted.get('prompt')!r})")
    if stored.get("texts_sha256") != wanted["texts_sha256"]:
        diffs.append(
            f"texts differ (cache {stored.get('num_texts')} texts sha256 {str(stored.get('texts_sha256'))[:16]}, "
            f"given {wanted['num_texts']} texts sha256 {wanted['texts_sha256'][:16]})"
        )
    return diffs


