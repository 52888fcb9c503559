"""Replacing modules' ``forward`` methods for the length of a context: the mechanism of the training and
prediction layouts (`bert_layers`, `dropout`), which change how a model computes, never what it holds."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch import nn


@contextlib.contextmanager
def replaced_forwards(replacements: Sequence[tuple[nn.Module, Callable[..., Any]]]) -> Iterator[int]:
    """Each module's ``forward`` replaced by its function (bound to the module) while the context lasts;
    yields how many were replaced. A module whose forward is replaced already (a layout entered twice, a
    shared encoder) is left as it is, and keeps its replacement when this context ends."""
    replaced = [(module, function) for module, function in replacements if "forward" not in vars(module)]
    for module, function in replaced:
        module.forward = types.MethodType(function, module)
    try:
        yield len(replaced)
    finally:
        for module, _ in replaced:
            del module.forward


__all__ = ["replaced_forwards"]
