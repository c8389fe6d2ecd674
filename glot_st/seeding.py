"""Seeded initialisation of poolers, independent of whatever the process drew from torch's generator before.

torch initialises parameters from its global generator, whose state depends on everything the process did
earlier (another model built, a shuffle, a dropout mask). :func:`seeded` draws from a generator started at a
given seed and puts the global state back afterwards, so a module built inside it has weights that are a
function of the seed alone (for a given torch version and module configuration). :func:`reinitialize` gives an
existing pooler those weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["reinitialize", "seeded"]


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    return seed


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU generator (and CUDA's, if initialised) seeded; restore them afterwards.

    Args:
        seed: a non-negative int.

    Example::

        with glot_st.seeded(42):
            glot = glot_st.GLOT(384)  # the same weights in any process, whatever ran before
    """
    seed = _check_seed(seed)
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def reinitialize(pooler: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give ``pooler`` the initial weights a module of its configuration gets when built under ``seed``.

    The module is rebuilt from its configuration (``get_config_dict()``, as sentence-transformers modules such
    as :class:`~glot_st.GLOT` and :class:`~glot_st.AdaPool` have) inside :func:`seeded`, and its parameters and
    buffers are copied into ``pooler`` in place (device and dtype kept). So ``reinitialize(GLOT(**cfg), s)``
    equals ``GLOT(**cfg)`` built under ``seeded(s)``, parameter for parameter.

    Args:
        pooler: a module with ``get_config_dict() -> dict`` whose class accepts that dict as keyword arguments.
        seed: a non-negative int.

    Returns:
        ``pooler`` itself, re-initialised.

    Raises:
        TypeError: the module has no ``get_config_dict`` (build it inside :func:`seeded` instead).
    """
    seed = _check_seed(seed)
    get_config = getattr(pooler, "get_config_dict", None)
    if not callable(get_config):
        raise TypeError(
            f"{type(pooler).__name__} has no get_config_dict(); build it inside glot_st.seeded(seed) instead"
        )
    with seeded(seed):
        fresh = type(pooler)(**get_config())
    pooler.load_state_dict(fresh.state_dict())
    return pooler
