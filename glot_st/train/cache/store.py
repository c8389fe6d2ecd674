"""The on-disk token-state store of a frozen backbone: writing (build, resume, repair) and reading.

A frozen sentence-transformers ``Transformer`` runs once over a list of texts; the token states of the
real (unmasked) tokens go to disk and training reads them back instead of running the backbone again.

Layout of a cache folder::

    manifest.json                 identity key (see :mod:`glot_st.train.cache.keys`), layout, finished shards
    shard_00000.npy               (tokens_in_shard, d) float16/float32, the texts' tokens back to back
    shard_00000_offsets.npy       (texts_in_shard + 1,) int64, text j owns rows offsets[j]:offsets[j+1]
    shard_00001.npy ...
    .lock                         held while a process builds the folder

No padding is stored. Shards are written atomically (a temporary file unique to the writing process, then a
rename; removed on any error, and a full disk is an error saying so) and the manifest lists finished shards, so an
interrupted build resumes where it stopped; temporary files a killed build left are removed by the next build. A build
holds an exclusive lock on the folder: a second process building the same folder waits for the first and
then reuses its shards. A damaged folder (unreadable manifest, truncated or missing shard) is an error naming
the file; ``build_cache(..., overwrite=True)`` repairs it.
"""

from __future__ import annotations

import contextlib
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

from glot_st.freeze import module_device
from glot_st.safe_io import TEMP_TAG, atomic_file
from glot_st.train.cache.keys import (
    cache_key,
    default_prompt,
    first_transformer,
    key_differences,
    preprocess,
    validate_texts,
)

try:  # POSIX advisory locks; elsewhere builds of one folder are not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["CACHE_DTYPES", "CACHE_FORMAT_VERSION", "TokenCache", "build_cache", "open_cache"]

CACHE_FORMAT_VERSION = 2  # 2: the key holds the tokenizer's truncation / padding settings
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
_DTYPES = {"float16": np.float16, "float32": np.float32}
CACHE_DTYPES: tuple[str, ...] = tuple(_DTYPES)  # storage dtypes build_cache accepts


# --------------------------------------------------------------------------------------------- writing


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    # a temporary file, then a rename; removed on any error, a full disk named as such (glot_st.safe_io)
    with atomic_file(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _atomic_write_json(path: Path, obj: dict[str, Any]) -> None:
    with atomic_file(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files a killed build left (call under the folder lock: no other build is writing)."""
    for path in [*directory.glob(f".*{TEMP_TAG}*"), *directory.glob("*.tmp")]:  # *.tmp: earlier versions' names
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"cache manifest {str(path)!r} is not valid JSON ({exc}); build_cache(..., overwrite=True) rebuilds it"
        ) from exc


def _shard_paths(directory: Path, shard: int) -> tuple[Path, Path]:
    return directory / f"shard_{shard:05d}.npy", directory / f"shard_{shard:05d}_offsets.npy"


@contextlib.contextmanager
def _folder_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``directory`` (a second builder waits here for the first)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_NAME, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _damaged_shards(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Finished shards whose files are missing, truncated or of the wrong shape (one sentence each)."""
    problems = []
    hidden_dim = manifest.get("hidden_dim")
    for name, entry in sorted(manifest.get("shards", {}).items(), key=lambda item: int(item[0])):
        states_path, offsets_path = _shard_paths(directory, int(name))
        try:
            offsets = np.load(offsets_path, allow_pickle=False)
            states = np.load(states_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            problems.append(f"shard {name} is unreadable ({type(exc).__name__}: {exc})")
            continue
        if offsets.shape != (entry["num_texts"] + 1,) or states.shape != (int(offsets[-1]), hidden_dim):
            problems.append(f"shard {name} has the wrong shape ({str(states_path)!r})")
    return problems


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

    transformer = first_transformer(model)
    # longest first, like SentenceTransformer.encode, so batches hold texts of similar length
    order = np.argsort([-len(t) for t in texts], kind="stable")
    pieces: list[np.ndarray | None] = [None] * len(texts)
    for start in range(0, len(texts), batch_size):
        batch_ids = order[start : start + batch_size]
        features = preprocess(model, [texts[i] for i in batch_ids], prompt)
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
        overwrite: delete a cache with another key (or layout) in ``directory`` instead of raising, and
            rebuild a damaged one (unreadable manifest, missing or truncated shard).
        show_progress_bar: show a tqdm bar over texts.
        key: ``cache_key(model, texts)`` if the caller already validated the texts and computed it (saves
            hashing the weights and checking the texts twice); ``None`` validates the texts and computes it.

    Returns:
        The opened :class:`TokenCache`.

    Raises:
        ValueError: empty/None text (naming its row); ``directory`` holds a cache for another backbone,
            max_seq_length, prompt or text set (naming which), or with another dtype/shard_size, and
            ``overwrite`` is False; the folder is damaged (naming the file) and ``overwrite`` is False; bad
            ``dtype``/``shard_size``/``batch_size``.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
    if key is None:
        texts = validate_texts(texts)
        key = cache_key(model, texts)
    elif key.get("num_texts") != len(texts):
        raise ValueError(f"the key is for {key.get('num_texts')} texts but {len(texts)} were given")
    else:
        texts = list(texts)
    if not texts:
        raise ValueError("cannot build a cache of zero texts")
    directory = Path(directory)
    with _folder_lock(directory):
        _remove_stale_temporaries(directory)
        manifest = _manifest_for_build(directory, key, dtype, shard_size, overwrite)
        _fill_shards(model, texts, directory, manifest, batch_size, device, show_progress_bar)
    return TokenCache(directory)


def _manifest_for_build(
    directory: Path, key: dict[str, Any], dtype: str, shard_size: int, overwrite: bool
) -> dict[str, Any]:
    """The manifest to resume from: the folder's own if it matches and is intact, else a fresh one."""
    try:
        manifest = _read_manifest(directory)
    except ValueError:
        if not overwrite:
            raise
        manifest = None
        _clear_folder(directory)
    if manifest is not None:
        problems = key_differences(manifest.get("key", {}), key)
        if manifest.get("dtype") != dtype:
            problems.append(f"dtype differs (cache {manifest.get('dtype')}, requested {dtype})")
        if manifest.get("shard_size") != shard_size:
            problems.append(f"shard_size differs (cache {manifest.get('shard_size')}, requested {shard_size})")
        if manifest.get("format_version") != CACHE_FORMAT_VERSION:
            problems.append(
                f"format_version differs (cache {manifest.get('format_version')}, code {CACHE_FORMAT_VERSION})"
            )
        if problems:
            _refuse_or_clear(directory, "holds another cache", problems, "Use another folder or overwrite=True.", overwrite)
            manifest = None
    if manifest is not None:
        damaged = _damaged_shards(directory, manifest)
        if damaged:
            _refuse_or_clear(directory, "is damaged", damaged, "build_cache(..., overwrite=True) rebuilds it.", overwrite)
            manifest = None
    if manifest is None:
        manifest = {
            "format_version": CACHE_FORMAT_VERSION,
            "key": key,
            "dtype": dtype,
            "shard_size": shard_size,
            "num_shards": math.ceil(key["num_texts"] / shard_size),
            "hidden_dim": None,
            "shards": {},
            "complete": False,
        }
        _atomic_write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def _refuse_or_clear(directory: Path, what: str, problems: list[str], hint: str, overwrite: bool) -> None:
    """Raise ``ValueError`` naming the folder's ``problems``, or (``overwrite``) empty the folder for a rebuild."""
    if not overwrite:
        raise ValueError(f"cache folder {str(directory)!r} {what}: " + "; ".join(problems) + f". {hint}")
    _clear_folder(directory)


def _clear_folder(directory: Path) -> None:
    """Delete everything in a cache folder except its lock file (which the caller holds)."""
    for path in directory.iterdir():
        if path.name == LOCK_NAME:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _fill_shards(
    model: torch.nn.Module,
    texts: list[str],
    directory: Path,
    manifest: dict[str, Any],
    batch_size: int,
    device: str | torch.device | None,
    show_progress_bar: bool,
) -> None:
    """Encode and write every shard the manifest does not list as finished (resuming a build)."""
    dtype, shard_size = manifest["dtype"], manifest["shard_size"]
    num_shards = manifest["num_shards"]
    todo = [s for s in range(num_shards) if str(s) not in manifest["shards"]]
    if todo:
        transformer = first_transformer(model)
        prompt = default_prompt(model)
        home = module_device(transformer)
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
            try:
                offsets = np.load(offsets_path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise ValueError(
                    f"cache offsets {str(offsets_path)!r} are unreadable ({exc}); "
                    "build_cache(..., overwrite=True) rebuilds them"
                ) from exc
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
            try:
                mm = np.load(states_path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise ValueError(
                    f"cache shard {str(states_path)!r} is unreadable or truncated ({exc}); "
                    "build_cache(..., overwrite=True) rebuilds it"
                ) from exc
            expected = (int(self._offsets[shard][-1]), self.hidden_dim)
            if mm.shape != expected:
                raise ValueError(
                    f"cache shard {str(states_path)!r} has shape {mm.shape}, expected {expected}; "
                    "build_cache(..., overwrite=True) rebuilds it"
                )
            self._memmaps[shard] = mm
            self.memmap_opens += 1
        return mm

    def check_matches(self, model: torch.nn.Module, texts: Sequence[str]) -> None:
        """Raise ``ValueError`` naming what differs if this cache is not for ``model`` and ``texts``.

        Args:
            model: the SentenceTransformer the caller wants token states of.
            texts: the N texts the caller will index by row.
        """
        problems = key_differences(self.key, cache_key(model, texts))
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


