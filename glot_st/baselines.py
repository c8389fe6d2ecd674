"""Baseline poolers with GLOT's ``pool`` interface: CLS, mean, max and AdaPool (learned attention pooling)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from glot_st._compat import Module
from glot_st.features import padded_token_inputs
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


class AdaPool(Module):
    """Learned attention pooling over the raw token states (tanh MLP scorer, softmax, weighted sum).

    A sentence-transformers module like :class:`glot_st.GLOT` (place it after a ``Transformer``; saved and loaded
    with the model through ``adapool_config.json`` and ``model.safetensors``), and a pooler with the ``pool``
    interface of the cached training loop. It is GLOT's readout without the graph, the learnable baseline GLOT is
    compared with.

    Args:
        in_dim: width ``d`` of the token states (the output width).
        scorer_hidden: width of the scorer MLP; ``None`` means ``max(128, in_dim // 2)``, as GLOT's readout. The
            resolved width is what the config saves.
    """

    config_file_name = "adapool_config.json"
    config_keys: list[str] = ["in_dim", "scorer_hidden"]

    def __init__(self, in_dim: int, scorer_hidden: int | None = None):
        super().__init__()
        if not isinstance(in_dim, int) or isinstance(in_dim, bool) or in_dim < 1:
            raise ValueError(f"in_dim must be a positive int; got {in_dim!r}")
        self.in_dim = in_dim
        self.readout = AttentionReadout(in_dim, scorer_hidden)
        self.scorer_hidden = self.readout.scorer[0].out_features

    def forward(self, features: dict[str, Tensor | Any], **kwargs) -> dict[str, Tensor | Any]:
        """Set ``features["sentence_embedding"]`` (B, d) from ``token_embeddings`` (B, L, d) and ``attention_mask``
        (B, L), or from the flattened layout (``token_embeddings`` (1, T, d) with ``cu_seq_lens_q`` (B+1,))."""
        token_states, mask = padded_token_inputs(features, include_prompt=True, module_name="AdaPool")
        features["sentence_embedding"] = self.pool(token_states, mask)
        return features

    def pool(self, token_states: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L, d) float token states, (B, L) mask -> (B, d) in the scorer's parameter dtype; rows without
        tokens give zeros."""
        if token_states.dim() != 3 or token_states.shape[-1] != self.in_dim:
            raise ValueError(f"token_states must be (B, L, {self.in_dim}); got {tuple(token_states.shape)}")
        batch, length, width = token_states.shape
        positions, node_batch, rowptr = valid_tokens(attention_mask.to(token_states.device) != 0)
        nodes = token_states.reshape(batch * length, width).index_select(0, positions)
        return self.readout(nodes.to(self.readout.scorer[0].weight.dtype), node_batch, rowptr, batch, native)[0]

    def get_embedding_dimension(self) -> int:
        """Output width ``d`` (the token-state width)."""
        return self.in_dim

    def get_sentence_embedding_dimension(self) -> int:
        """Alias of :meth:`get_embedding_dimension` (the sentence-transformers 5 name)."""
        return self.in_dim

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        **kwargs,
    ) -> AdaPool:
        """Load a saved AdaPool module (its config, then its weights)."""
        hub_kwargs = dict(
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        config = cls.load_config(model_name_or_path, **hub_kwargs)
        model = cls(**{key: config[key] for key in cls.config_keys if key in config})
        return cls.load_torch_weights(model_name_or_path, model=model, **hub_kwargs)


def make_pooler(name: str, in_dim: int) -> nn.Module:
    """A baseline pooler by name: ``cls`` | ``mean`` | ``max`` | ``adapool``."""
    if name == "adapool":
        return AdaPool(in_dim)
    if name in POOLERS:
        return SimplePooler(name, in_dim)
    raise ValueError(f"unknown pooler {name!r}; choose one of {', '.join(POOLERS)}")
