"""The token inputs of a pooling module, read from the features of sentence-transformers' ``Transformer``.

The ``Transformer`` module hands its successor one of two layouts:

- padded: ``token_embeddings`` (B, L, d) and ``attention_mask`` (B, L) (left or right padding);
- flattened (FlashAttention-2 with ``unpad_inputs``): ``token_embeddings`` (1, T, d) holding the ``B`` sentences
  one after the other, with ``cu_seq_lens_q`` (B+1,) int their start offsets and no padded mask.

:func:`padded_token_inputs` turns either into a padded batch and, as sentence-transformers' ``Pooling`` does with
``include_prompt=False``, removes the prompt tokens (the first ``features["prompt_length"]`` real tokens of every
sentence) from the mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

FLAT_OFFSETS_KEY = "cu_seq_lens_q"

__all__ = ["FLAT_OFFSETS_KEY", "exclude_prompt", "padded_token_inputs", "unflatten_tokens"]


def padded_token_inputs(
    features: dict[str, Tensor | Any], include_prompt: bool = True, module_name: str = "GLOT"
) -> tuple[Tensor, Tensor]:
    """The ``(token_states, mask)`` padded batch a pooling module works on.

    Args:
        features: the features of a ``Transformer`` module: ``token_embeddings`` and either ``attention_mask``
            (padded layout) or ``cu_seq_lens_q`` (flattened layout); optionally ``prompt_length`` (an int, or a
            tensor whose first value is the length, as sentence-transformers passes it).
        include_prompt: ``False`` excludes the first ``prompt_length`` real tokens of every sentence.
        module_name: the module named in error messages.

    Returns:
        ``token_states`` (B, L, d) float tensor and ``mask`` (B, L) tensor, non-zero at the tokens to pool.

    Raises:
        ValueError: ``token_embeddings`` is missing, or neither ``attention_mask`` nor ``cu_seq_lens_q`` is given.
    """
    if "token_embeddings" not in features:
        raise ValueError(
            f"{module_name} needs 'token_embeddings' in the features; place it directly after a Transformer module "
            f"(got keys {sorted(features)})"
        )
    token_states = features["token_embeddings"]
    if FLAT_OFFSETS_KEY in features:
        token_states, mask = unflatten_tokens(token_states, features[FLAT_OFFSETS_KEY], features.get("max_length_q"))
    elif "attention_mask" in features:
        mask = features["attention_mask"]
    else:
        raise ValueError(
            f"{module_name} needs 'attention_mask' (padded input) or '{FLAT_OFFSETS_KEY}' (flattened input) with "
            f"'token_embeddings'; place it directly after a Transformer module (got keys {sorted(features)})"
        )
    if not include_prompt and features.get("prompt_length") is not None:
        prompt_length = features["prompt_length"]
        prompt_length = int(prompt_length.flatten()[0]) if isinstance(prompt_length, Tensor) else int(prompt_length)
        mask = exclude_prompt(mask, prompt_length)
    return token_states, mask


def unflatten_tokens(flat: Tensor, offsets: Tensor, max_length: Any = None) -> tuple[Tensor, Tensor]:
    """Right-padded batch from the flattened layout.

    Args:
        flat: (1, T, d) or (T, d) float tensor, the ``B`` sentences' tokens one after the other.
        offsets: (B+1,) int tensor, ``offsets[b]`` the first token of sentence ``b``, ``offsets[B] = T``.
        max_length: the longest sentence when known (an int); computed from ``offsets`` otherwise (one host read).

    Returns:
        ``token_states`` (B, L, d) (zeros at padding) and ``mask`` (B, L) bool.
    """
    if flat.dim() == 3:
        if flat.shape[0] != 1:
            raise ValueError(f"flattened token_embeddings must be (1, T, d); got {tuple(flat.shape)}")
        flat = flat[0]
    if flat.dim() != 2 or offsets.dim() != 1 or offsets.numel() < 1:
        raise ValueError(
            f"flattened input needs token_embeddings (1, T, d) and {FLAT_OFFSETS_KEY} (B+1,); got "
            f"{tuple(flat.shape)} and {tuple(offsets.shape)}"
        )
    offsets = offsets.to(device=flat.device, dtype=torch.long)
    lengths = offsets[1:] - offsets[:-1]
    if int(offsets[-1]) != flat.shape[0]:
        raise ValueError(f"{FLAT_OFFSETS_KEY} ends at {int(offsets[-1])} but there are {flat.shape[0]} tokens")
    if isinstance(max_length, int):
        length = max_length
    else:
        length = int(lengths.max()) if lengths.numel() else 0
    mask = torch.arange(length, device=flat.device).unsqueeze(0) < lengths.unsqueeze(1)
    token_states = flat.new_zeros((lengths.numel(), length, flat.shape[-1]))
    token_states[mask] = flat  # the mask's row-major order is the flat order
    return token_states, mask


def exclude_prompt(mask: Tensor, prompt_length: int) -> Tensor:
    """A copy of ``mask`` (B, L) without the first ``prompt_length`` real tokens of every row.

    Padding may sit on either side: a row's prompt starts at its first real token. The input mask is not changed
    (gradient-caching losses run the forward twice on the same features).
    """
    if prompt_length <= 0:
        return mask
    real = mask != 0
    first = real.to(torch.int32).argmax(dim=1, keepdim=True)  # 0 for right padding (and for empty rows)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    return mask.masked_fill(positions < first + prompt_length, 0)
