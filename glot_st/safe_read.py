"""Reads of a model folder that are checked before anything is allocated.

- :func:`read_json_file`: a JSON file read with a size cap (a regular file only: a symlink to ``/dev/zero`` or a
  pipe is refused), its errors naming the file.
- :func:`read_safetensors_header`: the names, dtypes and shapes of a ``.safetensors`` file, read from its header
  (8-byte length prefix + JSON) with a size cap; a truncated file (data shorter than the header promises) is an
  error.
- :func:`load_checked_module`: build a module from a config and load its weights in four steps: (1) the
  module's parameter shapes are computed on the ``meta`` device (no memory), after layer counts were compared with
  the header; (2) names, shapes and float dtypes must agree with the header; (3) only then is the module built
  and the weights read; (4) every weight must be finite.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load_file

__all__ = [
    "FLOAT_WEIGHT_DTYPES",
    "MAX_CONFIG_BYTES",
    "MAX_HEADER_BYTES",
    "load_checked_module",
    "read_json_file",
    "read_safetensors_header",
]

MAX_CONFIG_BYTES = 1 << 20  # a config / modules.json / head JSON: far below this
MAX_HEADER_BYTES = 1 << 26  # a safetensors header: its own format caps it at 100 MB; ours are a few KB
FLOAT_WEIGHT_DTYPES = ("F16", "BF16", "F32", "F64")


def read_json_file(path: str | os.PathLike, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """The parsed JSON of ``path``, read with a cap of ``max_bytes``.

    Args:
        path: the file (a symlink to a regular file is followed).
        what: how errors name it (e.g. ``"GLOT config file"``).
        max_bytes: the largest file accepted.

    Raises:
        ValueError: not a regular file, larger than ``max_bytes``, not UTF-8 or not valid JSON (naming the file).
    """
    try:
        info = os.stat(path)
    except OSError as error:
        raise ValueError(f"{what} {str(path)!r} cannot be read: {error.strerror or error}") from error
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{what} {str(path)!r} is not a regular file")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what} {str(path)!r} is larger than {max_bytes} bytes; it is not a config file")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {error}") from error


def read_safetensors_header(path: str | os.PathLike, max_bytes: int = MAX_HEADER_BYTES) -> dict[str, tuple]:
    """``{name: (dtype, shape)}`` of the tensors a ``.safetensors`` file holds, from its header alone.

    Args:
        path: the weights file.
        max_bytes: the largest header accepted.

    Raises:
        ValueError: not a regular file, a header that is too large, not JSON or malformed, or a file shorter
            than its header says (truncated); each naming the file.
    """
    name = str(path)
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"weights file {name!r} is not a regular file")
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if size < 2 or size > max_bytes or 8 + size > info.st_size:
            raise ValueError(f"weights file {name!r} is not a safetensors file (or is truncated): bad header length")
        raw = handle.read(size)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"weights file {name!r} has a corrupt safetensors header: {error}") from error
    if not isinstance(header, dict):
        raise ValueError(f"weights file {name!r} has a corrupt safetensors header")
    data_size = info.st_size - 8 - size
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(int(n) for n in entry["shape"]), entry["data_offsets"]
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"weights file {name!r}: malformed header entry for {key!r}") from error
        if not 0 <= start <= end <= data_size:
            raise ValueError(f"weights file {name!r} is truncated: tensor {key!r} lies past the end of the file")
        tensors[key] = (str(dtype), shape)
    return tensors


def _meta_shapes(build: Callable[[], torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of ``build()``, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        module = build()
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _count_layers(tensors: dict[str, tuple], prefix: str) -> int:
    """Distinct ``<prefix>.<i>.`` indices among the tensor names."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return len({match.group(1) for match in map(pattern.match, tensors) if match})


def _compare_to_header(expected: dict[str, tuple], tensors: dict[str, tuple], name: str) -> None:
    """ValueError naming missing / unexpected tensors, a shape that differs, or a non-float dtype."""
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights file {name!r} does not fit its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, shape in expected.items():
        dtype, saved = tensors[key]
        if dtype not in FLOAT_WEIGHT_DTYPES:
            raise ValueError(f"weights file {name!r}: {key} has dtype {dtype}; weights must be floats")
        if saved != shape:
            raise ValueError(
                f"weights file {name!r} does not fit its config: {key} has shape {list(saved)}, the config gives "
                f"{list(shape)}"
            )


def load_checked_module(
    build: Callable[[], torch.nn.Module],
    weights_path: str | os.PathLike,
    what: str,
    layer_counts: dict[str, int] | None = None,
) -> torch.nn.Module:
    """``build()`` with the weights of ``weights_path`` loaded, after the checks of the module docstring.

    Args:
        build: makes the module from its config (a ``TypeError`` / ``ValueError`` means a bad config).
        weights_path: its ``.safetensors`` file.
        what: how errors name the config (e.g. ``"GLOT config file 'x/glot_config.json'"``).
        layer_counts: ``{prefix: n}``: the header must hold exactly ``n`` layers ``<prefix>.<i>.*`` (compared
            before the module is built, so a huge layer count is refused without building anything).

    Raises:
        ValueError: a bad config, weights that disagree with it (names, shapes, dtypes, layer counts), a
            corrupt or truncated weights file, or non-finite weights; each naming the file.
    """
    name = str(weights_path)
    tensors = read_safetensors_header(weights_path)
    for prefix, count in (layer_counts or {}).items():
        saved = _count_layers(tensors, prefix)
        if saved != count:
            raise ValueError(f"{what} gives {count} {prefix} but the weights file {name!r} holds {saved}")
    try:
        expected = _meta_shapes(build)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is invalid: {error}") from error
    _compare_to_header(expected, tensors, name)
    module = build()
    try:
        state = load_file(name)
    except Exception as error:  # safetensors raises its own error type for a corrupt file
        raise ValueError(f"weights file {name!r} could not be read: {error}") from error
    for key, value in state.items():
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"weights file {name!r}: {key} holds NaN or infinite values")
    module.load_state_dict(state, strict=True)
    return module
