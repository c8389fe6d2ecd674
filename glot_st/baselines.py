"""Baseline poolers with GLOT's ``pool`` interface: CLS, mean, max and AdaPool (learned attention pooling)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glot_st.graph import valid_tokens
from glot_st.kernels import native
from glot_st.readout import AttentionReadout

POOLERS = ("cls", "mean", "max", "adapool")

__all__ = ["POOLERS", "AdaPool", "SimplePooler", "make_pooler"]


class SimplePooler(nn.Module):
    """Parameter-free pooling of a padded batch.

    Args:
        mode: ``cls`` (first real token), ``mean`` or ``max`` over real tokens.
        in_dim: width of the token states (the output width).
    """

    def __init__(self, mode: str, in_dim: int):
        super().__init__()
        if mode not in ("cls", "mean", "max"):
            raise ValueError(f"unknown pooling {mode!r}; choose cls, mean or max")
        self.mode = mode
        self.in_dim = in_dim

    def pool(self, token_states: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L, d) float token states, (B, L) mask (non-zero = real token) -> (B, d) float32; rows without
        tokens give zeros."""
        x = token_states.float()
        mask = (attention_mask != 0).unsqueeze(-1)
        if self.mode == "mean":
            return (x * mask).sum(1) / mask.sum(1).clamp_min(1)
        if self.mode == "max":
            pooled = x.masked_fill(~mask, float("-inf")).amax(1)
            return torch.where(mask.any(1), pooled, torch.zeros_like(pooled))
        first = mask.squeeze(-1).long().argmax(1)  # first real token, whichever side the padding is on
        pooled = x[torch.arange(x.shape[0], device=x.device), first]
        return pooled * mask.any(1)

    def get_sentence_embedding_dimension(self) -> int:
        """Output width ``d`` (the token-state width)."""
        return self.in_dim


class AdaPool(nn.Module):
    """Learned attention pooling over the raw token states (tanh MLP scorer, softmax, weighted sum).

    Args:
        in_dim: width of the token states.
        scorer_hidden: scorer width; ``None`` = ``max(128, in_dim // 2)``, as GLOT's readout.
    """

    def __init__(self, in_dim: int, scorer_hidden: int | None = None):
        super().__init__()
        self.in_dim = in_dim
        self.readout = AttentionReadout(in_dim, scorer_hidden)

    def pool(self, token_states: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L, d) float token states, (B, L) mask -> (B, d) in the scorer's parameter dtype."""
        batch, length, width = token_states.shape
        positions, node_batch, rowptr = valid_tokens(attention_mask.to(token_states.device) != 0)
        nodes = token_states.reshape(batch * length, width).index_select(0, positions)
        return self.readout(nodes.to(self.readout.scorer[0].weight.dtype), node_batch, rowptr, batch, native)[0]

    def get_sentence_embedding_dimension(self) -> int:
        """Output width ``d`` (the token-state width)."""
        return self.in_dim


def make_pooler(name: str, in_dim: int) -> nn.Module:
    """A baseline pooler by name: ``cls`` | ``mean`` | ``max`` | ``adapool``."""
    if name == "adapool":
        return AdaPool(in_dim)
    if name in POOLERS:
        return SimplePooler(name, in_dim)
    raise ValueError(f"unknown pooler {name!r}; choose one of {', '.join(POOLERS)}")
