"""Compose a frozen backbone with GLOT; load and save GLOT models without running code from the model folder.

Which code runs:

- :func:`load` (and :func:`from_backbone` on a saved sentence-transformers folder) reads ``modules.json`` first
  and accepts only sentence-transformers classes and glot-st's own (``glot_st.module.GLOT``,
  ``glot_st.baselines.AdaPool`` and their Hub-native names ``glot_modeling.GLOT`` / ``glot_modeling.AdaPool``),
  which it maps to the installed glot-st classes. Any other class is refused before anything is loaded, and the
  backbone is loaded with ``trust_remote_code=False``, so no code from the folder or repository runs. Only a
  caller's explicit ``trust_remote_code=True`` gives sentence-transformers' own behaviour for the other classes.
- :func:`save` / :func:`push_to_hub` write the model as ``SentenceTransformer.save`` does and make it Hub-native
  (:func:`glot_st.hub.make_hub_native`): ``SentenceTransformer(path_or_repo_id, trust_remote_code=True)`` then
  loads it where glot-st is not installed, by running the generated ``glot_modeling.py``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.util import load_file_path

from glot_st._compat import HAS_MODEL_READY_HOOK, Transformer
from glot_st.baselines import AdaPool
from glot_st.freeze import freeze_modules
from glot_st.hub import HUB_NATIVE_NAMES, make_hub_native
from glot_st.model_folder import check_model_type, check_module_entries, read_module_entries
from glot_st.module import GLOT
from glot_st.safe_io import replace_folder
from glot_st.seeding import seeded

__all__ = ["GLOT_MODULE_CLASSES", "from_backbone", "load", "push_to_hub", "save", "write_model_folder"]

# Every modules.json class path of a glot-st module, and the installed class it loads as.
GLOT_MODULE_CLASSES: dict[str, type] = {
    "glot_st.module.GLOT": GLOT,
    "glot_st.baselines.AdaPool": AdaPool,
    HUB_NATIVE_NAMES["glot_st.module.GLOT"]: GLOT,
    HUB_NATIVE_NAMES["glot_st.baselines.AdaPool"]: AdaPool,
}
_HUB_KWARGS = ("token", "cache_folder", "revision", "local_files_only")


def from_backbone(
    name_or_path: str,
    *,
    max_seq_length: int | None = None,
    device: str | None = None,
    freeze: bool = True,
    transformer_kwargs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    seed: int | None = None,
    **glot_config: Any,
) -> SentenceTransformer:
    """Build ``SentenceTransformer([Transformer(backbone), GLOT(...)])`` with the Transformer frozen.

    Args:
        name_or_path: a Hugging Face model id or folder, or a sentence-transformers folder (its Transformer
            module is reused, with its ``max_seq_length``; its pooling is replaced by GLOT). A
            sentence-transformers folder is read as :func:`load` reads it: only sentence-transformers and glot-st
            classes, unless ``trust_remote_code`` is set.
        max_seq_length: truncate inputs to this many tokens (default: the backbone's own).
        device: device for the model (default: sentence-transformers' choice).
        freeze: freeze the Transformer (no gradients, eval mode); GLOT is then the only trainable part.
        transformer_kwargs: extra keyword arguments for ``Transformer(...)`` (plain model ids only).
        trust_remote_code: for a sentence-transformers folder, allow module classes outside
            sentence-transformers and glot-st (their code runs) and remote backbone code.
        seed: build GLOT under :func:`glot_st.seeded` (its initial weights are then a function of the seed,
            whatever the process drew from torch's generator before); ``None`` draws from the global generator.
        **glot_config: :class:`~glot_st.GLOT` arguments; ``in_dim`` is taken from the backbone (passing a
            different one is an error naming both sizes).

    Returns:
        The composed model.
    """
    if _is_sentence_transformer(name_or_path):
        if transformer_kwargs:
            raise ValueError(
                f"transformer_kwargs apply to a plain Hugging Face model; {name_or_path!r} is a sentence-transformers "
                "model whose Transformer settings come from its own config"
            )
        saved = _load_checked(name_or_path, trust_remote_code=trust_remote_code, require_glot=False, device="cpu")
        transformer = saved[0]
        if not isinstance(transformer, Transformer):
            raise ValueError(f"the first module of {name_or_path!r} is {type(transformer).__name__}, not a Transformer")
    else:
        transformer = Transformer(name_or_path, **(transformer_kwargs or {}))
    if max_seq_length is not None:
        transformer.max_seq_length = max_seq_length
    width = transformer.get_embedding_dimension() if hasattr(transformer, "get_embedding_dimension") else transformer.get_word_embedding_dimension()
    in_dim = glot_config.pop("in_dim", width)
    if in_dim != width:
        raise ValueError(f"in_dim={in_dim} does not match the backbone's token width {width} ({name_or_path!r})")
    with seeded(seed) if seed is not None else contextlib.nullcontext():
        glot = GLOT(in_dim=width, freeze_backbone=freeze, **glot_config)
    model = SentenceTransformer(modules=[transformer, glot], device=device)
    if freeze and not HAS_MODEL_READY_HOOK:  # sentence-transformers 5 has no on_model_ready hook
        freeze_modules([transformer])
    return model


def _is_sentence_transformer(name_or_path: str) -> bool:
    """True for a local folder or a Hub repo (online or in the local cache) holding ``modules.json``."""
    if os.path.isdir(name_or_path):
        return os.path.isfile(os.path.join(name_or_path, "modules.json"))
    try:
        return load_file_path(name_or_path, "modules.json") is not None
    except Exception:  # no network and not cached, a gated repo, ...: treat it as a plain model id
        return False


def load(model_name_or_path: str, trust_remote_code: bool = False, **kwargs: Any) -> SentenceTransformer:
    """Load a saved model holding a glot-st module (a folder or a Hub repo id), running no code from it.

    ``modules.json`` is read first (from the folder, the Hugging Face cache or the Hub, honouring
    ``cache_folder``, ``revision``, ``token`` and ``local_files_only``). Its glot-st classes, under their package
    or Hub-native names, load as the installed :class:`~glot_st.GLOT` / :class:`~glot_st.AdaPool` (a
    ``glot_modeling.py`` in the folder is never run); sentence-transformers classes load as usual, with
    ``trust_remote_code=False`` (so a backbone whose config asks for remote code is refused by transformers).

    Args:
        model_name_or_path: a local folder or a Hugging Face Hub repo id.
        trust_remote_code: ``True`` gives sentence-transformers' own behaviour for classes outside
            sentence-transformers and glot-st (their code runs) and lets the backbone run remote code. Only pass
            it for a model you trust.
        **kwargs: passed on to ``SentenceTransformer(...)`` (``device``, ``cache_folder``, ``revision``, ...).

    Returns:
        The loaded ``SentenceTransformer``.

    Raises:
        ValueError: ``modules.json`` names a class outside sentence-transformers and glot-st (the error names it)
            and ``trust_remote_code`` is not set; the model has no glot-st module; the model has no
            ``modules.json`` (not a saved sentence-transformers model).
    """
    return _load_checked(model_name_or_path, trust_remote_code=trust_remote_code, require_glot=True, **kwargs)


def save(
    model: SentenceTransformer,
    path: str | os.PathLike,
    write_extra: Callable[[Path], None] | None = None,
    **kwargs: Any,
) -> None:
    """``model.save(path, **kwargs)`` made Hub-native (:func:`glot_st.hub.make_hub_native`), written atomically.

    The complete folder is written beside ``path`` and swapped in at the end (:func:`glot_st.safe_io.replace_folder`):
    an error or a kill at any point leaves either the old folder or the new one, never a mix, and a second
    process saving to the same ``path`` at the same time is refused. An existing ``path`` must be a saved model
    (``modules.json``) or an empty folder: it is replaced as a whole.

    The folder then loads with :func:`load` (installed classes) and also with
    ``SentenceTransformer(path, trust_remote_code=True)`` where glot-st is not installed (running the generated
    ``glot_modeling.py``).

    Args:
        model: a ``SentenceTransformer`` holding a GLOT (or AdaPool) module.
        path: the folder to write.
        write_extra: called with the staged folder after the model is written, to add files that are saved as
            part of the same unit (e.g. a task head in ``glot_head/``); ``None``: nothing more.
        **kwargs: passed on to ``SentenceTransformer.save`` (``model_name``, ``create_model_card``, ...).

    Raises:
        ValueError: ``path`` is a file or a non-empty folder holding no saved model; another process is saving
            to it (:class:`glot_st.safe_io.OutputBusyError`).
        OSError: the disk is full (the message says so) or another write error; ``path`` is then unchanged.
    """
    target = Path(path)
    if target.is_dir() and any(target.iterdir()) and not (target / "modules.json").is_file():
        raise ValueError(
            f"{str(target)!r} is a non-empty folder holding no saved model; saving replaces the whole folder, so "
            "choose a new or empty folder"
        )
    if target.exists() and not target.is_dir():
        raise ValueError(f"{str(target)!r} is a file, not a folder")
    with replace_folder(target) as staging:
        write_model_folder(model, staging, **kwargs)
        if write_extra is not None:
            write_extra(staging)


def write_model_folder(model: SentenceTransformer, folder: str | os.PathLike, **kwargs: Any) -> None:
    """Write the model into ``folder`` (an empty or new folder) as :func:`save` does, without the swap.

    For a caller that stages more files beside the model (the training kit's output) and swaps the whole
    folder in itself with :func:`glot_st.safe_io.replace_folder`.

    Args:
        model: a ``SentenceTransformer`` holding a GLOT (or AdaPool) module.
        folder: where to write.
        **kwargs: passed on to ``SentenceTransformer.save``.
    """
    model.save(str(folder), **kwargs)
    make_hub_native(folder)


def push_to_hub(
    model: SentenceTransformer, repo_id: str, write_extra: Callable[[Path], None] | None = None, **kwargs: Any
) -> str:
    """Save the model Hub-native (:func:`save`) into a temporary folder and upload that folder.

    Args:
        model: a ``SentenceTransformer`` holding a GLOT (or AdaPool) module.
        repo_id: the Hub repository, ``"org/name"``.
        write_extra: as for :func:`save`: adds files to the staged folder before the upload.
        **kwargs: passed on to ``SentenceTransformer.push_to_hub`` (``token``, ``private``, ``commit_message``,
            ``revision``, ``create_pr``, ...); ``local_model_path`` is set here, so the upload always carries the
            freshly written model card (``replace_model_card`` has no effect).

    Returns:
        What ``push_to_hub`` returns: the commit (or pull request) URL.
    """
    if "local_model_path" in kwargs:
        raise ValueError("glot_st.push_to_hub saves the model itself; use model.push_to_hub for a saved folder")
    with tempfile.TemporaryDirectory(prefix="glot_st_push_") as folder:
        model_name = repo_id if "/" in repo_id else None
        write_model_folder(model, folder, model_name=model_name)
        if write_extra is not None:
            write_extra(Path(folder))
        return model.push_to_hub(repo_id, local_model_path=folder, **kwargs)


def _load_checked(
    model_name_or_path: str, *, trust_remote_code: bool, require_glot: bool, **kwargs: Any
) -> SentenceTransformer:
    """Check ``modules.json`` (see :func:`load`), then let sentence-transformers load the model with the glot-st
    classes resolved to the installed ones."""
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    entries = _read_modules_json(model_name_or_path, hub_kwargs)
    refs = [entry["type"] for entry in entries]
    if require_glot and not any(ref in GLOT_MODULE_CLASSES for ref in refs):
        raise ValueError(
            f"{model_name_or_path!r} holds no glot-st module (its modules.json names {refs}); load it with "
            "SentenceTransformer(...), or build a GLOT model from it with glot_st.from_backbone(...)"
        )
    foreign = [ref for ref in refs if ref not in GLOT_MODULE_CLASSES and not ref.startswith("sentence_transformers.")]
    if foreign and not trust_remote_code:
        raise ValueError(
            f"{model_name_or_path!r} names module class(es) {foreign} in its modules.json, which are neither "
            "sentence-transformers nor glot-st classes; loading them would run code from the model. Nothing was "
            "loaded. Pass trust_remote_code=True only if you trust that code."
        )
    check_module_entries(entries, model_name_or_path, require_glot=require_glot)
    check_model_type(load_file_path(model_name_or_path, "config_sentence_transformers.json", **hub_kwargs), model_name_or_path)
    model = SentenceTransformer.__new__(SentenceTransformer)
    resolve = SentenceTransformer._load_module_class_from_ref

    def load_module_class(class_ref: str, *args: Any, **resolve_kwargs: Any) -> type:
        if class_ref in GLOT_MODULE_CLASSES:
            return GLOT_MODULE_CLASSES[class_ref]
        if not trust_remote_code and not class_ref.startswith("sentence_transformers."):  # checked above
            raise ValueError(f"module class {class_ref!r} is not allowed without trust_remote_code=True")
        return resolve(model, class_ref, *args, **resolve_kwargs)

    # Resolve the glot-st classes to the installed ones: sentence-transformers looks the method up on the
    # instance while __init__ loads the modules; the override is removed again right after.
    model.__dict__["_load_module_class_from_ref"] = load_module_class
    try:
        model.__init__(model_name_or_path, trust_remote_code=trust_remote_code, **kwargs)
    finally:
        model.__dict__.pop("_load_module_class_from_ref", None)
    return model


def _read_modules_json(model_name_or_path: str, hub_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of the model's ``modules.json`` (a ValueError when it has none or it is malformed)."""
    path = load_file_path(model_name_or_path, "modules.json", **hub_kwargs)
    if path is None:
        raise ValueError(
            f"{model_name_or_path!r} has no modules.json, so it is not a saved sentence-transformers model; build "
            "a GLOT model from a backbone with glot_st.from_backbone(...)"
        )
    return read_module_entries(path, model_name_or_path)
