"""GLOT as a sentence-transformers module: token graph -> message passing -> jumping knowledge -> readout."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glot_st._compat import Module
from glot_st.features import padded_token_inputs
from glot_st.freeze import freeze_modules, modules_before
from glot_st.graph import (
    DEFAULT_EDGE_WEIGHT,
    DEFAULT_GRAPH,
    DEFAULT_K,
    DEFAULT_LEARNED_FLOOR,
    DEFAULT_TAU,
    EDGE_WEIGHTS,
    GRAPH_KINDS,
    LearnedEdges,
    build_token_graph,
    token_norms,
)
from glot_st.graph_ops import DenseGraph, SparseGraph
from glot_st.kernels import get_kernels
from glot_st.layers import CONVS, make_layer
from glot_st.model_card import GLOT_CONFIG_FILE, attach_model_card
from glot_st.readout import JK_MODES, AttentionReadout, JumpingKnowledge
from glot_st.safe_read import load_checked_module, read_json_file

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "sparse", "dense")
# Config keys a saved ``glot_config.json`` may lack, with the value that reproduces what the versions before the key
# computed: models saved by those versions load unchanged.
ADDED_CONFIG_KEYS = {"include_prompt": True, "gat_edge_term": None, "learned_floor": DEFAULT_LEARNED_FLOOR}
# Config keys that do not change the embeddings (beyond float tolerance): a saved config lacking one loads with its
# default and a warning. Every other key missing is an error.
RUNTIME_CONFIG_KEYS = ("backend", "layout", "dense_max_elements", "output_token_states", "freeze_backbone")
TOKEN_STATES_KEY = "glot_token_embeddings"
# ``layout="auto"``: the largest ``B * heads * L * L`` that goes dense, per device type, when the config leaves
# ``dense_max_elements`` unset. CPU: measured by ``benchmarks/bench_glot.py`` (the layout section). CUDA: NOT
# measured (no GPU was available): the dense layout is the one without host syncs, so it is taken up to a
# bound set by memory (2**26 entries: 256 MiB per (B, H, L, L) float32 tensor).
DEFAULT_DENSE_MAX_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 26}
# The dense layout computes every padded position; on a CPU, where counting the real tokens costs no sync,
# ``auto`` also needs at least this share of the (B, L) grid to be real tokens (measured, as above).
DENSE_MIN_FILL_CPU = 0.7
# The GLOT arguments (besides ``in_dim``) that rebuild the authors' module (ipsitmantri/GLOT, main.py, class GLOT,
# with its command-line defaults): two PyG GATConv(edge_dim=1) layers of width 128 fed unit edge attributes on a
# threshold graph at 0.3, ReLU after each, jumping knowledge by concatenation, a tanh scorer of width
# max(128, D // 2) (``scorer_hidden=None``), no dropout. ``GLOT(in_dim, **AUTHORS_GLOT)`` takes their weights
# under the same parameter names (``convs.`` -> ``layers.``, ``score_layer.`` -> ``readout.scorer.``); see the
# README's "Fidelity to the authors' code" for what differs and ``tests/core/test_authors_parity.py`` for the check.
AUTHORS_GLOT: dict[str, Any] = {
    "hidden_dim": 128,
    "num_layers": 2,
    "conv": "gat",
    "heads": 1,
    "concat_heads": True,
    "jk": "cat",
    "tau": 0.3,
    "graph": "threshold",
    "edge_weight": "binary",
    "gat_edge_term": True,
    "scorer_hidden": None,
    "dropout": 0.0,
}

__all__ = [
    "ADDED_CONFIG_KEYS",
    "AUTHORS_GLOT",
    "DEFAULT_DENSE_MAX_ELEMENTS",
    "DENSE_MIN_FILL_CPU",
    "GLOT",
    "LAYOUTS",
    "RUNTIME_CONFIG_KEYS",
    "TOKEN_STATES_KEY",
]


class GLOT(Module):
    """Graph pooling over token-similarity graphs of a frozen encoder (Mantri et al., ICLR 2026).

    Place it after a ``Transformer`` module. For every sentence it links the sentence's own tokens whose
    states are similar, refines the token states with ``num_layers`` message-passing layers, combines the
    input and every layer by jumping knowledge, and pools the tokens with learned attention weights.

    Reads ``features["token_embeddings"]`` (B, L, in_dim) and ``features["attention_mask"]`` (B, L) (or the
    flattened layout of FlashAttention-2: ``token_embeddings`` (1, T, in_dim) with ``cu_seq_lens_q`` (B+1,), which
    is unflattened to a padded batch) and ``features["prompt_length"]`` when a prompt was used; writes
    ``features["sentence_embedding"]`` (B, D) and, with ``output_token_states=True``,
    ``features["glot_token_embeddings"]`` (B, L, D) (zeros at padding). ``D`` is
    :meth:`get_sentence_embedding_dimension`. A sentence without any valid token pools to a zero vector.

    Args:
        in_dim: width of the backbone's token states.
        hidden_dim: width of every message-passing layer's output.
        num_layers: number of message-passing layers ``K`` (0 = attention pooling of the raw token states).
        conv: ``gat`` | ``gcn`` | ``gin`` | ``gine`` | ``sage``.
        heads: GAT attention heads.
        concat_heads: GAT heads concatenated (``hidden_dim // heads`` channels each) or averaged.
        jk: jumping knowledge, ``cat`` (width ``in_dim + K * hidden_dim``), ``max`` or ``mean`` (width
            ``hidden_dim``; the input is linearly projected to ``hidden_dim`` first).
        tau: cosine threshold of the ``threshold`` graph, in [-1, 1]; edges where ``cos > tau``. For the
            ``learned`` graph, the initial value of its learned threshold.
        graph: ``threshold`` | ``topk`` | ``mutual_knn`` | ``learned`` (soft edges ``sigmoid((cos - tau) / T)``
            with ``tau`` and ``T`` learned, on the candidate pairs ``cos > learned_floor``; see
            :class:`glot_st.graph.LearnedEdges`).
        k: neighbours per token for ``topk`` and ``mutual_knn``.
        edge_weight: ``binary`` or ``cosine`` (similarity clamped at 0); see :mod:`glot_st.layers` for how
            each conv uses it. The ``learned`` graph sets its own weights and needs ``binary``.
        gat_edge_term: PyG's ``edge_dim=1`` edge-feature term ``a_edge . W_e w_ij`` inside every GAT attention
            logit, fed the edge weight (1 on binary graphs, the cosine on cosine graphs, the soft weight on learned
            ones). ``True`` (default): on, as in the authors' GLOT; ``False``: off; ``None``: on for
            ``edge_weight="cosine"`` only, as before the key existed (configs saved without it load so). Read by
            GAT layers only; the other convs ignore it.
        learned_floor: ``learned`` graph only: pairs with ``cos > learned_floor`` are its candidate edges, in
            [-1, 1) (-1: every pair; both layouts use the same candidates).
        scorer_hidden: width of the readout's scorer MLP; ``None`` = ``max(128, D // 2)``.
        dropout: dropout on every layer's output and on GAT attention coefficients, during training only.
        backend: sparse kernels, ``auto`` | ``native`` | ``torch_scatter`` (see :mod:`glot_st.kernels`).
        layout: ``auto`` (dense masked matmul for batches with at most ``dense_max_elements`` adjacency
            entries and, on a CPU, at least ``DENSE_MIN_FILL_CPU`` of real tokens; sparse CSR otherwise),
            ``sparse`` or ``dense``. Results agree within float tolerance. The
            dense layout has no host sync when ``validate_inputs`` is off (see below); the sparse one does.
        dense_max_elements: ``B * heads * L * L`` bound of the ``auto`` layout's dense path; ``None`` (default)
            takes the bound of the input's device type from ``DEFAULT_DENSE_MAX_ELEMENTS`` (measured on CPU, not
            on CUDA; see ``benchmarks/results/bench_glot.md``).
        output_token_states: also write the refined token states under ``glot_token_embeddings``.
        freeze_backbone: when the module becomes part of a model, freeze every module in front of it (no
            gradients, eval mode).
        include_prompt: pool the prompt's tokens too. ``False`` leaves out the first ``prompt_length`` real tokens
            of every sentence (the ``prompt_length`` feature the ``Transformer`` sets when a prompt is used), as
            sentence-transformers' ``Pooling(include_prompt=False)`` does: they are no graph nodes at all.

    Attributes:
        validate_inputs: a runtime switch, not saved with the config (default ``True``). When set, a NaN or inf
            value at a real token raises a ValueError naming the batch rows; the check reuses the token norms
            the graph needs, and reads one bool on the host. Set it to ``False`` for a forward without any host
            sync on the dense layout (CUDA graphs, ``torch.compile(fullgraph=True)``): a non-finite token then
            gives a NaN embedding for its sentence instead of an error.
    """

    validate_inputs: bool = True

    config_file_name = GLOT_CONFIG_FILE
    config_keys: list[str] = [
        "in_dim",
        "hidden_dim",
        "num_layers",
        "conv",
        "heads",
        "concat_heads",
        "jk",
        "tau",
        "graph",
        "k",
        "edge_weight",
        "gat_edge_term",
        "learned_floor",
        "scorer_hidden",
        "dropout",
        "backend",
        "layout",
        "dense_max_elements",
        "output_token_states",
        "freeze_backbone",
        "include_prompt",
    ]

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 2,
        conv: str = "gat",
        heads: int = 1,
        concat_heads: bool = True,
        jk: str = "cat",
        tau: float = DEFAULT_TAU,
        graph: str = DEFAULT_GRAPH,
        k: int = DEFAULT_K,
        edge_weight: str = DEFAULT_EDGE_WEIGHT,
        gat_edge_term: bool | None = True,
        learned_floor: float = DEFAULT_LEARNED_FLOOR,
        scorer_hidden: int | None = None,
        dropout: float = 0.1,
        backend: str = "auto",
        layout: str = "auto",
        dense_max_elements: int | None = None,
        output_token_states: bool = False,
        freeze_backbone: bool = True,
        include_prompt: bool = True,
    ):
        super().__init__()
        _validate_config(locals())
        self.in_dim = int(in_dim)
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.conv = conv
        self.heads = int(heads)
        self.concat_heads = bool(concat_heads)
        self.jk = jk
        self.tau = float(tau)
        self.graph = graph
        self.k = int(k)
        self.edge_weight = edge_weight
        self.gat_edge_term = gat_edge_term
        self.learned_floor = float(learned_floor)
        self.scorer_hidden = None if scorer_hidden is None else int(scorer_hidden)
        self.dropout = float(dropout)
        self.backend = backend
        self.layout = layout
        self.dense_max_elements = None if dense_max_elements is None else int(dense_max_elements)
        self.output_token_states = bool(output_token_states)
        self.freeze_backbone = bool(freeze_backbone)
        self.include_prompt = bool(include_prompt)
        self._kernels = get_kernels(backend)  # raises with the install command if torch_scatter is missing

        widths = [self.in_dim] + [self.hidden_dim] * self.num_layers
        self.layers = nn.ModuleList(
            make_layer(
                conv,
                widths[i],
                widths[i + 1],
                heads=self.heads,
                concat_heads=self.concat_heads,
                dropout=self.dropout,
                use_edge_weight=edge_weight == "cosine" if gat_edge_term is None else gat_edge_term,
            )
            for i in range(self.num_layers)
        )
        # the learned graph's threshold and temperature (absent otherwise, so fixed-graph weights are unchanged)
        self.learned_edges = LearnedEdges(self.tau) if graph == "learned" else None
        self.jumping_knowledge = JumpingKnowledge(jk, self.in_dim, self.hidden_dim, self.num_layers)
        self.readout = AttentionReadout(self.jumping_knowledge.out_dim, self.scorer_hidden)

    # ---- sentence-transformers interface --------------------------------------------------------------
    def forward(self, features: dict[str, Tensor | Any], **kwargs) -> dict[str, Tensor | Any]:
        """Pool ``features["token_embeddings"]`` under ``features["attention_mask"]`` (see the class doc)."""
        token_embeddings, mask = padded_token_inputs(features, self.include_prompt, "GLOT")
        embeddings, token_states = self._pool(token_embeddings, mask, self.output_token_states)
        features["sentence_embedding"] = embeddings
        if token_states is not None:
            features[TOKEN_STATES_KEY] = token_states
        return features

    def pool(self, token_states: Tensor, attention_mask: Tensor) -> Tensor:
        """Sentence embeddings of a padded batch.

        Args:
            token_states: (B, L, in_dim) float tensor of any float dtype (fp32, fp16, bf16).
            attention_mask: (B, L), non-zero at real tokens; padding may sit on either side.

        Returns:
            (B, D) tensor in the module's parameter dtype.
        """
        return self._pool(token_states, attention_mask, False)[0]

    @torch.no_grad()
    def init_as_mean_pooling(self, layer_scale: float = 1e-3) -> GLOT:
        """Re-initialise so that the untrained module pools like the backbone's mean pooling.

        The readout's last scorer layer is zeroed (every token of a sentence gets the same weight, so the
        readout is the token mean), message-passing weights are scaled by ``layer_scale`` and their biases
        zeroed (the layer outputs are close to zero but their gradients are not). With ``jk="cat"`` the sentence
        embedding is then ``[mean(x); ~0]``: its first ``in_dim`` entries equal mean pooling and cosine
        similarities match mean pooling's up to ``O(layer_scale)``. Training starts from there.

        Args:
            layer_scale: factor on the message-passing weights, in ``(0, 1]``.

        Returns:
            ``self``.

        Raises:
            ValueError: ``jk`` is not ``"cat"`` (the other modes project the input) or a bad ``layer_scale``.
        """
        if self.jk != "cat":
            raise ValueError(f"init_as_mean_pooling needs jk='cat' (the input is kept as is); this module has jk={self.jk!r}")
        if not 0.0 < layer_scale <= 1.0:
            raise ValueError(f"layer_scale must be in (0, 1], got {layer_scale}")
        last = self.readout.scorer[-1]
        last.weight.zero_()
        last.bias.zero_()
        for name, parameter in self.layers.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            else:
                parameter.mul_(layer_scale)
        return self

    def get_embedding_dimension(self) -> int:
        """``D``: ``in_dim + num_layers * hidden_dim`` for ``jk="cat"``, ``hidden_dim`` otherwise."""
        return self.jumping_knowledge.out_dim

    def get_sentence_embedding_dimension(self) -> int:
        """Alias of :meth:`get_embedding_dimension` (the sentence-transformers 5 name)."""
        return self.get_embedding_dimension()

    def on_model_ready(self, model: nn.Module) -> None:
        """Freeze every module in front of this one when ``freeze_backbone`` is set; add the GLOT model card."""
        if self.freeze_backbone:
            freeze_modules(modules_before(model, self))
        attach_model_card(model)

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
    ) -> GLOT:
        """Load a saved GLOT module; a missing or corrupt config or weights file is an error naming the file.

        A config lacking keys that change the embeddings is an error naming them; one lacking only keys of
        ``RUNTIME_CONFIG_KEYS`` loads with their defaults and a warning naming them; keys of
        ``ADDED_CONFIG_KEYS`` (added after the first release) take the value that reproduces older models.
        """
        hub_kwargs = dict(
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        where = f"{model_name_or_path}/{subfolder}".rstrip("/")
        config_path = cls.load_file_path(model_name_or_path, filename=cls.config_file_name, **hub_kwargs)
        if config_path is None:
            raise FileNotFoundError(f"GLOT config file {cls.config_file_name!r} is missing from {where!r}")
        config = read_json_file(config_path, "GLOT config file")
        if not isinstance(config, dict):
            raise ValueError(f"GLOT config file {config_path!r} must hold a JSON object")
        unknown = sorted(set(config) - set(cls.config_keys))
        if unknown:
            logger.warning("ignoring unknown GLOT config keys %s in %s", unknown, config_path)
            config = {key: value for key, value in config.items() if key in cls.config_keys}
        missing = [key for key in cls.config_keys if key not in config and key not in ADDED_CONFIG_KEYS]
        required = [key for key in missing if key not in RUNTIME_CONFIG_KEYS]
        if required:
            raise ValueError(
                f"GLOT config file {config_path!r} lacks the keys {required}, which change the embeddings; a default "
                "would silently give another model. Add them with the values the model was trained with."
            )
        if missing:
            logger.warning("GLOT config file %s lacks %s; using their defaults", config_path, missing)
        config = {**{k: v for k, v in ADDED_CONFIG_KEYS.items() if k not in config}, **config}
        weights_path = cls.load_file_path(model_name_or_path, filename="model.safetensors", **hub_kwargs)
        if weights_path is None:
            raise FileNotFoundError(f"GLOT weights file 'model.safetensors' is missing from {where!r}")
        # sizes are checked against the weights' header before anything is allocated; weights must be finite floats
        layers = config.get("num_layers")
        return load_checked_module(
            lambda: cls(**config), weights_path, f"GLOT config file {config_path!r}",
            layer_counts={"layers": layers} if isinstance(layers, int) and not isinstance(layers, bool) else None,
        )

    # ---- the computation --------------------------------------------------------------------------------
    def _pool(self, token_states: Tensor, attention_mask: Tensor, with_tokens: bool) -> tuple[Tensor, Tensor | None]:
        mask = self._check_inputs(token_states, attention_mask)
        batch, length, _ = token_states.shape
        tokens = int(mask.sum()) if self.layout == "auto" and mask.device.type == "cpu" else None  # no sync on CPU
        layout = self._choose_layout(batch, length, token_states.device, tokens)
        with torch.no_grad():
            norm = token_norms(token_states)  # (B, L, 1): the graph's cosine needs them, the value check too
            # (padding present, every token finite): what the dense layout needs to zero the padding rows; unknown
            # (assume the worst) without the check, whose host read they share
            padding = (True, False)
            if self.validate_inputs:
                padding = _raise_on_non_finite(norm.squeeze(-1), mask)
            graph = build_token_graph(
                token_states,
                mask,
                tau=self.tau,
                graph=self.graph,
                k=self.k,
                edge_weight=self.edge_weight,
                floor=self.learned_floor,
                layout=layout,
                backend=self._kernels,
                norm=norm,
            )
        if self.learned_edges is not None:
            graph = self.learned_edges(graph)  # soft weights, with gradients to the threshold and temperature
        if layout == "dense":
            return self._pool_dense(token_states, mask, graph, with_tokens, *padding)
        dtype = self.readout.scorer[0].weight.dtype
        nodes = token_states.reshape(batch * length, self.in_dim).index_select(0, graph.node_position).to(dtype)
        features = self.jumping_knowledge(nodes, self._layer_outputs(nodes, graph))
        embeddings, _ = self.readout(features, graph.node_batch, graph.sentence_rowptr, batch, self._kernels)
        if not with_tokens:
            return embeddings, None
        padded = features.new_zeros((batch * length, features.shape[1]))
        padded = padded.index_copy(0, graph.node_position, features).view(batch, length, features.shape[1])
        return embeddings, padded

    def _pool_dense(
        self,
        token_states: Tensor,
        mask: Tensor,
        graph: DenseGraph,
        with_tokens: bool,
        has_padding: bool,
        all_finite: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """The dense layout on all ``B * L`` rows of the padded grid: no gather, no scatter, no host sync.

        ``has_padding``: False only when the batch is known to have no padding; ``all_finite``: every token,
        padding included, is known to be finite.
        """
        batch, length, _ = token_states.shape
        dtype = self.readout.scorer[0].weight.dtype
        # padding rows become zeros: finite, so the zero attention and readout weights cancel them exactly. The
        # multiply by the mask is the cheaper pass, but keeps a NaN at padding, so it needs all_finite.
        keep = mask.unsqueeze(2)
        if not has_padding:
            nodes = token_states
        else:
            nodes = token_states * keep if all_finite else torch.where(keep, token_states, 0.0)
        nodes = nodes.to(dtype).reshape(batch * length, self.in_dim)
        layer_outputs = self._layer_outputs(nodes, graph)
        if self.jk == "cat":  # the readout takes the parts, so the (B*L, D) features are never concatenated
            parts = [nodes, *layer_outputs]
        else:
            parts = [self.jumping_knowledge(nodes, layer_outputs)]
        parts = [part.view(batch, length, part.shape[-1]) for part in parts]
        embeddings, _ = self.readout.pool_padded(parts, mask)
        if not with_tokens:
            return embeddings, None
        return embeddings, torch.cat(parts, dim=-1).masked_fill(~mask.unsqueeze(2), 0.0)

    def _layer_outputs(self, nodes: Tensor, graph: SparseGraph | DenseGraph) -> list[Tensor]:
        """Message passing: (rows, in_dim) -> K tensors (rows, hidden_dim)."""
        hidden, layer_outputs = nodes, []
        for layer in self.layers:
            # in place: every layer returns a fresh tensor that its own backward does not need
            hidden = F.dropout(F.relu(layer(hidden, graph), inplace=True), p=self.dropout, training=self.training)
            layer_outputs.append(hidden)
        return layer_outputs

    def _choose_layout(
        self, batch: int, length: int, device: torch.device | str = "cpu", tokens: int | None = None
    ) -> str:
        """The layout of a ``(batch, length)`` input with ``tokens`` real tokens (``None``: unknown) on ``device``."""
        if self.layout != "auto":
            return self.layout
        if self.conv == "gine":
            return "sparse"
        if tokens is not None and torch.device(device).type == "cpu" and tokens < DENSE_MIN_FILL_CPU * batch * length:
            return "sparse"
        bound = self.dense_max_elements
        if bound is None:
            kind = torch.device(device).type
            bound = DEFAULT_DENSE_MAX_ELEMENTS.get(kind, DEFAULT_DENSE_MAX_ELEMENTS["cpu"])
        heads = self.heads if self.conv == "gat" else 1
        return "dense" if batch * heads * length * length <= bound else "sparse"

    def _check_inputs(self, token_states: Tensor, attention_mask: Tensor) -> Tensor:
        """Validate shapes, width and dtype; return the mask as a bool (B, L) tensor (values: see ``_pool``)."""
        if not isinstance(token_states, Tensor) or token_states.dim() != 3:
            shape = tuple(token_states.shape) if isinstance(token_states, Tensor) else type(token_states).__name__
            raise ValueError(f"token_embeddings must be a (batch, tokens, in_dim) tensor; got {shape}")
        if not token_states.is_floating_point():
            raise ValueError(f"token_embeddings must be a float tensor; got dtype {token_states.dtype}")
        if token_states.shape[-1] != self.in_dim:
            raise ValueError(
                f"GLOT was built with in_dim={self.in_dim} but the token embeddings have width "
                f"{token_states.shape[-1]}; build GLOT with in_dim={token_states.shape[-1]} for this backbone"
            )
        if tuple(attention_mask.shape) != tuple(token_states.shape[:2]):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but token_embeddings have "
                f"(batch, tokens) = {tuple(token_states.shape[:2])}"
            )
        return attention_mask.to(device=token_states.device) != 0

    def __repr__(self) -> str:
        return f"GLOT({self.get_config_dict()})"

    # The kernel set is a Python module, which cannot be pickled: drop it and resolve it again, so GLOT can be
    # deep-copied and sent to the spawned workers of sentence-transformers' multi-process pool.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_kernels", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._kernels = get_kernels(self.backend)


def _raise_on_non_finite(norm: Tensor, mask: Tensor) -> tuple[bool, bool]:
    """ValueError naming the batch rows whose real tokens have a non-finite norm (a NaN or inf value).

    ``norm``: (B, L) float32 token norms; ``mask``: (B, L) bool. Returns ``(has_padding, all_finite)``: whether
    the mask has padding, whether every token, padding included, is finite. Reads three bools on the host (one
    device sync).
    """
    finite = torch.isfinite(norm)
    bad = ~finite & mask
    any_bad, has_padding, all_finite = torch.stack([bad.any(), ~mask.all(), finite.all()]).tolist()
    if any_bad:
        rows = bad.any(-1).nonzero().flatten().tolist()
        raise ValueError(
            f"token_embeddings contain NaN or inf (or values too large for a float32 norm) at real tokens of "
            f"batch row(s) {rows[:10]}"
        )
    return has_padding, all_finite


def _validate_config(config: dict[str, Any]) -> None:
    """Raise ValueError naming the first invalid config value."""

    def positive_int(name: str, minimum: int = 1) -> None:
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")

    def choice(name: str, options: tuple[str, ...]) -> None:
        if config[name] not in options:
            raise ValueError(f"unknown {name} {config[name]!r}; choose one of {', '.join(options)}")

    positive_int("in_dim")
    positive_int("hidden_dim")
    positive_int("num_layers", minimum=0)
    positive_int("heads")
    positive_int("k")
    if config["dense_max_elements"] is not None:
        positive_int("dense_max_elements", minimum=0)
    if config["scorer_hidden"] is not None:
        positive_int("scorer_hidden")
    choice("conv", CONVS)
    choice("jk", JK_MODES)
    choice("graph", GRAPH_KINDS)
    choice("edge_weight", EDGE_WEIGHTS)
    choice("layout", LAYOUTS)
    _validate_graph_options(config)
    tau = config["tau"]
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not -1.0 <= float(tau) <= 1.0:
        raise ValueError(f"tau must be a number in [-1, 1]; got {tau!r}")
    dropout = config["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
    if config["conv"] == "gine" and config["layout"] == "dense":
        raise ValueError("conv='gine' needs layout='sparse' or 'auto' (its message is not a matrix product)")
    if config["conv"] == "gat" and config["concat_heads"] and config["hidden_dim"] % config["heads"]:
        raise ValueError(
            f"hidden_dim={config['hidden_dim']} must be divisible by heads={config['heads']} when heads are concatenated"
        )


def _validate_graph_options(config: dict[str, Any]) -> None:
    """Raise ValueError naming a bad ``gat_edge_term`` / ``learned_floor`` or a combination that cannot work."""
    edge_term = config["gat_edge_term"]
    if edge_term is not None and not isinstance(edge_term, bool):
        raise ValueError(f"gat_edge_term must be true, false or null; got {edge_term!r}")
    floor = config["learned_floor"]
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not -1.0 <= float(floor) < 1.0:
        raise ValueError(f"learned_floor must be a number in [-1, 1); got {floor!r}")
    if config["graph"] == "learned" and config["edge_weight"] != "binary":
        raise ValueError("graph='learned' sets its own soft edge weights; leave edge_weight='binary'")
