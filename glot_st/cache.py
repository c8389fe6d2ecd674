"""On-disk token-state cache of a frozen backbone.

A frozen sentence-transformers ``Transformer`` runs once over a list of texts; the token states of the
real (unmasked) tokens go to disk and training reads them back instead of running the backbone again.

Layout of a cache folder::

    manifest.json                 identity key, layout and the list of finished shards
    shard_00000.npy               (tokens_in_shard, d) float16/float32, the texts' tokens back to back
    shard_00000_offsets.npy       (texts_in_shard + 1,) int64, text j owns rows offsets[j]:offsets[j+1]
    shard_00001.npy ...

No padding is stored. A cache is keyed by (backbone identity, max_seq_length, the model's default prompt, sha256
of the texts); opening it for another backbone, max length, prompt or text set raises ``ValueError`` naming what
differs. Shards are
written atomically (temporary file + rename) and the manifest lists finished shards, so an interrupted
build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "CACHE_DTYPES",
    "CACHE_FORMAT_VERSION",
    "LengthBucketBatchSampler",
    "TokenCache",
    "backbone_identity",
    "build_cache",
    "cache_key",
    "default_prompt",
    "iter_cached_batches",
    "key_fingerprint",
    "open_cache",
    "texts_digest",
    "validate_texts",
]

CACHE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_DTYPES = {"float16": np.float16, "float32": np.float32}
CACHE_DTYPES: tuple[str, ...] = tuple(_DTYPES)  # storage dtypes build_cache accepts
# Above this many parameter bytes the weight digest samples every parameter with a stride instead of
# hashing all of its bytes.
_FULL_HASH_LIMIT_BYTES = 256 * 2**20
_SAMPLE_ELEMENTS = 1 << 16


# --------------------------------------------------------------------------------------------- identity


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
        texts: N strings (validated with :func:`validate_texts`).

    Returns:
        Hex digest string (64 characters).
    """
    return _texts_digest(validate_texts(texts))


def _texts_digest(texts: Sequence[str]) -> str:
    """:func:`texts_digest` of already validated texts."""
    digest = hashlib.sha256()
    for text in texts:
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


def _first_transformer(model: torch.nn.Module) -> torch.nn.Module:
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
    transformer = _first_transformer(model)
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


def _preprocess(model: torch.nn.Module, texts: list[str], prompt: str | None) -> dict[str, Any]:
    """Tokenize a batch exactly as ``model.encode`` does, with ``prompt`` prepended."""
    preprocess = getattr(model, "preprocess", None)
    if preprocess is not None:  # sentence-transformers >= 6
        return preprocess(texts, prompt=prompt) if prompt else preprocess(texts)
    # sentence-transformers < 6: tokenize() takes no prompt; encode() prepends it to every text
    return model.tokenize([prompt + text for text in texts] if prompt else texts)


def cache_key(
    model: torch.nn.Module, texts: Sequence[str], *, backbone: dict[str, str] | None = None
) -> dict[str, Any]:
    """The key a cache is valid for: backbone, max_seq_length, default prompt and texts.

    Args:
        model: ``SentenceTransformer`` with a ``Transformer`` first module.
        texts: the N texts to cache (validated).
        backbone: ``backbone_identity(model)`` if the caller already computed it (hashing the weights is the
            expensive part); ``None`` computes it.

    Returns:
        ``{"backbone": dict, "max_seq_length": int | None, "prompt": str | None, "texts_sha256": str,
        "num_texts": int}``.
    """
    return _make_key(model, validate_texts(texts), backbone)


def _make_key(model: torch.nn.Module, texts: Sequence[str], backbone: dict[str, str] | None) -> dict[str, Any]:
    """:func:`cache_key` of already validated texts."""
    return {
        "backbone": backbone_identity(model) if backbone is None else backbone,
        "max_seq_length": _first_transformer(model).max_seq_length,
        "prompt": default_prompt(model),
        "texts_sha256": _texts_digest(texts),
        "num_texts": len(texts),
    }


def key_fingerprint(key: dict[str, Any]) -> str:
    """Short hex fingerprint of a :func:`cache_key` (to name cache folders)."""
    return _json_digest(key)[:16]


def _key_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
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
    # caches written before prompts were keyed have no "prompt": they were built without one
    if stored.get("prompt") != wanted.get("prompt"):
        diffs.append(f"default prompt differs (cache {stored.get('prompt')!r}, model {wanted.get('prompt')!r})")
    if stored.get("texts_sha256") != wanted["texts_sha256"]:
        diffs.append(
            f"texts differ (cache {stored.get('num_texts')} texts sha256 {str(stored.get('texts_sha256'))[:16]}, "
            f"given {wanted['num_texts']} texts sha256 {wanted['texts_sha256'][:16]})"
        )
    return diffs


# --------------------------------------------------------------------------------------------- writing


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"cache manifest {str(path)!r} is not valid JSON: {exc}") from exc


def _shard_paths(directory: Path, shard: int) -> tuple[Path, Path]:
    return directory / f"shard_{shard:05d}.npy", directory / f"shard_{shard:05d}_offsets.npy"


@torch.inference_mode()
def _encode_shard(
    model: torch.nn.Module,
    texts: list[str],
    *,
    first_row: int,
    batch_size: int,
    np_dtype: type,
    device: torch.device,
    progress: tqdm | None,
    prompt: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the backbone over one shard's texts.

    Args:
        model: the SentenceTransformer (its ``preprocess`` (or ``tokenize``) and first module are used).
        texts: n texts of this shard.
        first_row: global row of ``texts[0]`` (for error messages).
        batch_size: texts per forward pass.
        np_dtype: ``np.float16`` or ``np.float32`` storage dtype.
        device: where the backbone runs (the first module must already be there).
        progress: bar advanced by the number of texts done, or ``None``.
        prompt: prepended to every text as ``model.encode`` does (see :func:`default_prompt`), or ``None``.

    Returns:
        ``(states, offsets)``: ``states`` (T, d) ``np_dtype`` with the real tokens of the n texts back to
        back in text order, ``offsets`` (n + 1,) int64.
    """
    from sentence_transformers.util import batch_to_device

    transformer = _first_transformer(model)
    # longest first, like SentenceTransformer.encode, so batches hold texts of similar length
    order = np.argsort([-len(t) for t in texts], kind="stable")
    pieces: list[np.ndarray | None] = [None] * len(texts)
    for start in range(0, len(texts), batch_size):
        batch_ids = order[start : start + batch_size]
        features = _preprocess(model, [texts[i] for i in batch_ids], prompt)
        features = batch_to_device(features, device)
        out = transformer(features)
        # one device -> host copy per batch; the per-text work below is numpy slicing
        states = out["token_embeddings"].float().cpu().numpy()  # (b, L, d)
        mask = out["attention_mask"].bool().cpu().numpy()  # (b, L)
        lengths = mask.sum(axis=1)
        if (lengths == 0).any():
            raise ValueError(f"text row {first_row + int(batch_ids[int(np.argmin(lengths))])} produced no tokens")
        real = states[mask]  # (tokens, d), text by text in batch order
        stored = real.astype(np_dtype)
        for bad, problem in (
            (~np.isfinite(real).all(axis=1), "backbone produced non-finite token states for text row {row}"),
            (
                ~np.isfinite(stored).all(axis=1),
                "token states of text row {row} overflow " + np.dtype(np_dtype).name + "; use dtype='float32'",
            ),
        ):
            if bad.any():
                j = int(np.searchsorted(np.cumsum(lengths), int(np.argmax(bad)), side="right"))
                raise FloatingPointError(problem.format(row=first_row + int(batch_ids[j])))
        for local, piece in zip(batch_ids, np.split(stored, np.cumsum(lengths)[:-1])):
            pieces[local] = piece
        if progress is not None:
            progress.update(len(batch_ids))
    lengths = np.array([p.shape[0] for p in pieces], dtype=np.int64)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate(pieces, axis=0), offsets


def build_cache(
    model: torch.nn.Module,
    texts: Sequence[str],
    directory: str | os.PathLike,
    *,
    dtype: str = "float16",
    shard_size: int = 4096,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    key: dict[str, Any] | None = None,
) -> TokenCache:
    """Run the frozen backbone once over ``texts`` and store the token states in ``directory``.

    Reuses a finished cache with the same key, resumes an interrupted one (finished shards are skipped).

    Args:
        model: ``SentenceTransformer`` whose first module is the frozen ``Transformer``; texts go through
            ``model.preprocess`` (or ``model.tokenize`` on older sentence-transformers) with the model's
            default prompt (:func:`default_prompt`) and ``model[0]`` exactly as in ``model.encode``.
        texts: N non-empty strings; row i of the cache is ``texts[i]``.
        directory: cache folder (created if missing).
        dtype: ``"float16"`` or ``"float32"`` storage dtype.
        shard_size: texts per shard file.
        batch_size: texts per backbone forward pass.
        device: where the backbone runs; ``None`` = ``model.device``. The Transformer is moved there for the
            build and moved back to its own device afterwards (also on errors).
        overwrite: delete a cache with another key (or layout) in ``directory`` instead of raising.
        show_progress_bar: show a tqdm bar over texts.
        key: ``cache_key(model, texts)`` if the caller already computed it (saves hashing the weights
            twice); ``None`` computes it.

    Returns:
        The opened :class:`TokenCache`.

    Raises:
        ValueError: empty/None text (naming its row); ``directory`` holds a cache for another backbone,
            max_seq_length, prompt or text set (naming which), or with another dtype/shard_size, and
            ``overwrite`` is False; bad ``dtype``/``shard_size``/``batch_size``.
    """
    texts = validate_texts(texts)
    return _build_cache(
        model, texts, directory, dtype=dtype, shard_size=shard_size, batch_size=batch_size, device=device,
        overwrite=overwrite, show_progress_bar=show_progress_bar, key=key,
    )


def _module_device(module: torch.nn.Module) -> torch.device | None:
    """Device of the module's first parameter (or buffer); ``None`` for a module without tensors."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


def _build_cache(
    model: torch.nn.Module,
    texts: list[str],
    directory: str | os.PathLike,
    *,
    dtype: str = "float16",
    shard_size: int = 4096,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    key: dict[str, Any] | None = None,
    backbone: dict[str, str] | None = None,
) -> TokenCache:
    """:func:`build_cache` of already validated texts (``backbone``: a precomputed backbone identity)."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
    if not texts:
        raise ValueError("cannot build a cache of zero texts")
    directory = Path(directory)
    key = _make_key(model, texts, backbone) if key is None else key
    manifest = _read_manifest(directory)
    if manifest is not None:
        problems = _key_differences(manifest.get("key", {}), key)
        if manifest.get("dtype") != dtype:
            problems.append(f"dtype differs (cache {manifest.get('dtype')}, requested {dtype})")
        if manifest.get("shard_size") != shard_size:
            problems.append(f"shard_size differs (cache {manifest.get('shard_size')}, requested {shard_size})")
        if manifest.get("format_version") != CACHE_FORMAT_VERSION:
            problems.append(
                f"format_version differs (cache {manifest.get('format_version')}, code {CACHE_FORMAT_VERSION})"
            )
        if problems:
            if not overwrite:
                raise ValueError(
                    f"cache folder {str(directory)!r} holds another cache: " + "; ".join(problems)
                    + ". Use another folder or overwrite=True."
                )
            shutil.rmtree(directory)
            manifest = None
    if manifest is None:
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format_version": CACHE_FORMAT_VERSION,
            "key": key,
            "dtype": dtype,
            "shard_size": shard_size,
            "num_shards": math.ceil(len(texts) / shard_size),
            "hidden_dim": None,
            "shards": {},
            "complete": False,
        }
        _atomic_write_json(directory / MANIFEST_NAME, manifest)

    num_shards = manifest["num_shards"]
    todo = [s for s in range(num_shards) if str(s) not in manifest["shards"]]
    if todo:
        transformer = _first_transformer(model)
        prompt = default_prompt(model)
        home = _module_device(transformer)
        run_device = torch.device(device) if device is not None else model.device
        was_training = transformer.training
        done_texts = sum(manifest["shards"][k]["num_texts"] for k in manifest["shards"])
        progress = tqdm(
            total=len(texts), initial=done_texts, desc="caching token states", unit="text",
            disable=not show_progress_bar,
        )
        try:
            transformer.eval()
            if device is not None:
                transformer.to(run_device)
            for shard in todo:
                lo, hi = shard * shard_size, min(len(texts), (shard + 1) * shard_size)
                states, offsets = _encode_shard(
                    model, texts[lo:hi], first_row=lo, batch_size=batch_size,
                    np_dtype=_DTYPES[dtype], device=run_device, progress=progress, prompt=prompt,
                )
                states_path, offsets_path = _shard_paths(directory, shard)
                _atomic_save_npy(states_path, states)
                _atomic_save_npy(offsets_path, offsets)
                manifest["hidden_dim"] = int(states.shape[1])
                manifest["shards"][str(shard)] = {
                    "num_texts": hi - lo,
                    "num_tokens": int(offsets[-1]),
                    "states": states_path.name,
                    "offsets": offsets_path.name,
                }
                manifest["complete"] = len(manifest["shards"]) == num_shards
                _atomic_write_json(directory / MANIFEST_NAME, manifest)
        finally:
            progress.close()
            if device is not None and home is not None:
                transformer.to(home)
            transformer.train(was_training)
    return TokenCache(directory)


# --------------------------------------------------------------------------------------------- reading


class TokenCache:
    """Read access to a finished cache folder.

    Each shard's memmap is opened once (lazily) and kept; a batch gathers its rows by offsets.

    Args:
        directory: a folder written by :func:`build_cache`.

    Attributes:
        directory (Path): the folder.
        manifest (dict): the parsed manifest.
        lengths (np.ndarray): (N,) int64, tokens stored per text.
        hidden_dim (int): d.
        dtype (str): storage dtype (``"float16"`` or ``"float32"``).
        memmap_opens (int): how many shard memmaps were opened so far (each shard at most once).

    Raises:
        FileNotFoundError: no manifest in ``directory``.
        ValueError: the cache is unfinished (names the missing shards).
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        manifest = _read_manifest(self.directory)
        if manifest is None:
            raise FileNotFoundError(f"no cache manifest in {str(self.directory)!r}")
        missing = [s for s in range(manifest["num_shards"]) if str(s) not in manifest["shards"]]
        if missing:
            raise ValueError(
                f"cache {str(self.directory)!r} is unfinished: shards {missing} missing; rerun build_cache to resume"
            )
        self.manifest = manifest
        self.shard_size = int(manifest["shard_size"])
        self.hidden_dim = int(manifest["hidden_dim"])
        self.dtype = str(manifest["dtype"])
        self._offsets: list[np.ndarray] = []
        for shard in range(manifest["num_shards"]):
            _, offsets_path = _shard_paths(self.directory, shard)
            offsets = np.load(offsets_path, allow_pickle=False)
            expected = manifest["shards"][str(shard)]["num_texts"] + 1
            if offsets.shape != (expected,):
                raise ValueError(f"{str(offsets_path)!r} has shape {offsets.shape}, expected ({expected},)")
            self._offsets.append(offsets)
        self.lengths = np.concatenate([np.diff(o) for o in self._offsets]).astype(np.int64)
        self._memmaps: dict[int, np.ndarray] = {}
        self.memmap_opens = 0

    @property
    def key(self) -> dict[str, Any]:
        """The cache key (see :func:`cache_key`)."""
        return self.manifest["key"]

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_memmaps"] = {}
        return state

    def _shard(self, shard: int) -> np.ndarray:
        mm = self._memmaps.get(shard)
        if mm is None:
            states_path, _ = _shard_paths(self.directory, shard)
            mm = np.load(states_path, mmap_mode="r", allow_pickle=False)
            expected = (int(self._offsets[shard][-1]), self.hidden_dim)
            if mm.shape != expected:
                raise ValueError(f"{str(states_path)!r} has shape {mm.shape}, expected {expected}")
            self._memmaps[shard] = mm
            self.memmap_opens += 1
        return mm

    def check_matches(self, model: torch.nn.Module, texts: Sequence[str]) -> None:
        """Raise ``ValueError`` naming what differs if this cache is not for ``model`` and ``texts``.

        Args:
            model: the SentenceTransformer the caller wants token states of.
            texts: the N texts the caller will index by row.
        """
        problems = _key_differences(self.key, cache_key(model, texts))
        if problems:
            raise ValueError(f"cache {str(self.directory)!r} does not match: " + "; ".join(problems))

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather texts by row and pad to the batch's own longest text (right padding).

        Args:
            indices: B row numbers (ints in ``[0, N)``; list, int ndarray or int tensor).

        Returns:
            ``(token_states, attention_mask)``: float32 tensor (B, Lb, d) with zeros at padding, and long
            tensor (B, Lb) with 1 at real tokens; ``Lb`` = max stored length in the batch.

        Raises:
            IndexError: a row outside ``[0, N)`` (names it).
            TypeError: non-integer indices.
        """
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        rows = np.asarray(indices).reshape(-1)
        if rows.size and rows.dtype.kind not in "iu":
            raise TypeError(f"cache rows must be integers, got dtype {rows.dtype}")
        rows = rows.astype(np.int64, copy=False)
        n = len(self)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            bad = int(rows[(rows < 0) | (rows >= n)][0])
            raise IndexError(f"cache row {bad} out of range [0, {n})")
        lengths = self.lengths[rows]
        max_len = int(lengths.max()) if rows.size else 0
        # gathered in the storage dtype (plain copies), converted to float32 once for the whole batch
        states = np.zeros((rows.size, max_len, self.hidden_dim), dtype=_DTYPES[self.dtype])
        shards, locals_ = np.divmod(rows, self.shard_size)
        for b, (shard, local) in enumerate(zip(shards.tolist(), locals_.tolist())):
            offsets = self._offsets[shard]
            start, end = offsets[local], offsets[local + 1]
            states[b, : end - start] = self._shard(shard)[start:end]
        mask = np.arange(max_len)[None, :] < lengths[:, None]
        return torch.from_numpy(states).float(), torch.from_numpy(mask).long()

    def close(self) -> None:
        """Drop the open memmaps (they reopen lazily on the next read)."""
        self._memmaps.clear()


def open_cache(
    directory: str | os.PathLike,
    model: torch.nn.Module | None = None,
    texts: Sequence[str] | None = None,
) -> TokenCache:
    """Open a finished cache, checking it was built for ``model`` and ``texts`` when they are given.

    Args:
        directory: cache folder.
        model: the SentenceTransformer the caller expects (or ``None`` to skip the check).
        texts: the texts the caller expects (needs ``model``; or ``None``).

    Returns:
        The :class:`TokenCache`.

    Raises:
        ValueError: backbone, max_seq_length or texts differ (names which); cache unfinished.
        FileNotFoundError: no cache in ``directory``.
    """
    cache = TokenCache(directory)
    if model is not None or texts is not None:
        if model is None or texts is None:
            raise ValueError("open_cache checks need both model and texts")
        cache.check_matches(model, texts)
    return cache


# --------------------------------------------------------------------------------------------- batching


class LengthBucketBatchSampler(torch.utils.data.Sampler):
    """Batches of item indices, optionally sorted by length inside buckets; deterministic per (seed, epoch).

    Each epoch: permute the items (if ``shuffle``), cut the permutation into buckets of ``bucket_size``
    items, sort each bucket by length (longest first, stable) and cut it into batches, then permute the batch
    order (if ``shuffle``). Batches of similar lengths pad less.

    Args:
        lengths: (N,) ints, a length per item (e.g. tokens per text, or the longer text of a pair).
        batch_size: items per batch.
        shuffle: permute items and batches each epoch.
        seed: seed of the permutations; the RNG of epoch e is ``np.random.default_rng([seed, e])``.
        bucket_size: items per sorting bucket (rounded up to a multiple of ``batch_size``); ``None`` = no
            sorting.
        drop_last: drop the epoch's last batch if it is short.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if bucket_size is not None and bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1 or None, got {bucket_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size = None if bucket_size is None else math.ceil(bucket_size / batch_size) * batch_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields."""
        self.epoch = int(epoch)

    def batches(self) -> list[np.ndarray]:
        """All batches of the current epoch: a list of int64 index arrays."""
        n = self.lengths.shape[0]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        batches: list[np.ndarray] = []
        if self.bucket_size is None:
            batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        else:
            for lo in range(0, n, self.bucket_size):
                bucket = order[lo : lo + self.bucket_size]
                bucket = bucket[np.argsort(-self.lengths[bucket], kind="stable")]
                batches.extend(bucket[i : i + self.batch_size] for i in range(0, len(bucket), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and batches:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches():
            yield batch.tolist()

    def __len__(self) -> int:
        n = self.lengths.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def iter_cached_batches(
    cache: TokenCache,
    batch_sampler: Sequence[Sequence[int]] | torch.utils.data.Sampler,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield cached batches in the sampler's order.

    Args:
        cache: the :class:`TokenCache` to read.
        batch_sampler: iterable of index lists (e.g. :class:`LengthBucketBatchSampler`).

    Yields:
        ``(indices, token_states, attention_mask)``: long (B,), float32 (B, Lb, d), long (B, Lb).
    """
    for batch in batch_sampler:
        states, mask = cache.get_batch(batch)
        yield torch.as_tensor(list(batch), dtype=torch.long), states, mask
