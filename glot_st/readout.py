"""Readout: jumping knowledge over the layer outputs, then attention pooling within each sentence."""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

JK_MODES = ("cat", "max", "mean")

__all__ = ["JK_MODES", "AttentionReadout", "JumpingKnowledge"]


class JumpingKnowledge(nn.Module):
    """Combine the input token states and every layer's output.

    - ``cat``: ``[X, H_1, ..., H_K]``, width ``in_dim + K * hidden_dim``.
    - ``max`` / ``mean``: element-wise over ``[P X, H_1, ..., H_K]`` where ``P`` is a learned linear projection
      ``in_dim -> hidden_dim`` (so the input takes part as it does in ``cat``); width ``hidden_dim``.

    Args:
        mode: ``cat`` | ``max`` | ``mean``.
        in_dim: width ``d`` of the token states.
        hidden_dim: width of every layer output.
        num_layers: ``K`` (0 allowed: the readout then sees the token states alone).
    """

    def __init__(self, mode: str, in_dim: int, hidden_dim: int, num_layers: int):
        super().__init__()
        if mode not in JK_MODES:
            raise ValueError(f"unknown jk {mode!r}; choose one of {', '.join(JK_MODES)}")
        self.mode = mode
        self.out_dim = in_dim + num_layers * hidden_dim if mode == "cat" else hidden_dim
        self.input_proj = nn.Linear(in_dim, hidden_dim) if mode != "cat" else None

    def forward(self, token_states: Tensor, layer_outputs: list[Tensor]) -> Tensor:
        """``token_states`` (N, in_dim) and K tensors (N, hidden_dim) -> (N, out_dim)."""
        if self.mode == "cat":
            return torch.cat([token_states, *layer_outputs], dim=-1)
        stacked = torch.stack([self.input_proj(token_states), *layer_outputs], dim=0)
        return stacked.amax(0) if self.mode == "max" else stacked.mean(0)


class AttentionReadout(nn.Module):
    """Score every token, softmax the scores within its sentence, return the weighted sum.

    ``pi = softmax_sentence(w2 . tanh(W1 h + b1) + b2)``, ``z_b = sum_{i in b} pi_i h_i``.

    Args:
        in_dim: width ``D`` of the token features.
        scorer_hidden: width of the scorer MLP; ``None`` means ``max(128, D // 2)``.
    """

    def __init__(self, in_dim: int, scorer_hidden: int | None = None):
        super().__init__()
        width = scorer_hidden if scorer_hidden is not None else max(128, in_dim // 2)
        self.scorer = nn.Sequential(nn.Linear(in_dim, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(
        self, features: Tensor, node_batch: Tensor, rowptr: Tensor, num_sentences: int, kernels: ModuleType
    ) -> tuple[Tensor, Tensor]:
        """Pool token features into sentence embeddings.

        Args:
            features: (N, D) token features, grouped by sentence (``node_batch`` non-decreasing).
            node_batch: (N,) int64 sentence of every token.
            rowptr: (B+1,) int64 start of every sentence's tokens.
            num_sentences: ``B``; sentences without tokens get a zero vector.
            kernels: the kernel module doing the segment softmax.

        Returns:
            ``(embeddings (B, D), weights (N,))``; weights sum to 1 within each non-empty sentence.
        """
        logits = self.scorer(features).squeeze(-1)
        weights = kernels.segment_softmax(logits, node_batch, rowptr, num_sentences)
        pooled = features.new_zeros((num_sentences, features.shape[1]))
        pooled = pooled.index_add(0, node_batch, weights.unsqueeze(1) * features)
        return pooled, weights

    def pool_padded(self, parts: list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        """Pool a padded batch: the result of :meth:`forward` on its valid tokens, with no host sync.

        The features are given as parts whose concatenation they are (jumping knowledge ``cat``: the input and
        every layer output), so they are never concatenated: the scorer's first layer sums the products of its
        column blocks, and each part is pooled on its own.

        Args:
            parts: (B, L, C_k) tensors, ``sum(C_k) = D``; padding positions must be finite (their weight is 0).
            mask: (B, L) bool, True at real tokens.

        Returns:
            ``(embeddings (B, D), weights (B, L))``; weights are zero at padding and sum to 1 within each
            non-empty sentence; a sentence without tokens gets a zero vector.
        """
        batch, length = mask.shape
        first, activation, last = self.scorer
        hidden, start = None, 0
        for part in parts:
            width = part.shape[-1]
            flat, weight = part.reshape(batch * length, width), first.weight[:, start : start + width]
            hidden = F.linear(flat, weight, first.bias) if hidden is None else hidden.addmm_(flat, weight.t())
            start += width
        # in place: the Tanh's backward needs only its output, and the pre-activation is needed by nothing
        logits = last(hidden.tanh_() if isinstance(activation, nn.Tanh) else activation(hidden)).view(batch, length)
        # padding gets the lowest finite logit, so a row without tokens stays finite (and is zeroed below)
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1).masked_fill(~mask, 0.0).unsqueeze(1)  # (B, 1, L)
        pooled = torch.cat([torch.bmm(weights, part).squeeze(1) for part in parts], dim=-1)
        return pooled, weights.squeeze(1)
