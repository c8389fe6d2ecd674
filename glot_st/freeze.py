"""Freezing the backbone in front of GLOT: no gradients, and always in eval mode (no dropout).

A frozen backbone is a fixed feature extractor: its token states must not change between training steps,
between ``model.train()`` and ``model.eval()``, or between a cached and a live forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["freeze_modules", "module_device", "modules_before"]

_FROZEN_FLAG = "_glot_st_frozen"


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: put the module back in eval mode if a ``.train()`` call switched it."""
    if module.training:
        module.eval()


def freeze_modules(modules: Iterable[nn.Module]) -> None:
    """Turn off gradients of every parameter and pin eval mode on each module (idempotent)."""
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        module.eval()
        if not getattr(module, _FROZEN_FLAG, False):
            module.register_forward_pre_hook(_stay_in_eval)
            setattr(module, _FROZEN_FLAG, True)


def modules_before(model: nn.Module, target: nn.Module) -> list[nn.Module]:
    """The child modules in front of ``target`` in a sequential model (empty if ``target`` is not a child)."""
    before = []
    for module in model.children():
        if module is target:
            return before
        before.append(module)
    return []


def module_device(module: nn.Module) -> torch.device | None:
    """Device of the module's first parameter (or buffer); ``None`` for a module without tensors."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None
