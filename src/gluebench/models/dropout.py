"""Dropout masks from numpy's PCG64 instead of torch's CPU ``bernoulli_``, for training on a CPU.

Why: on a CPU, torch draws a dropout mask one element at a time from its Mersenne Twister, about 7 ns per
element here: 1.5 ms for one of MiniLM's 32 x 16 x 384 activations, a hundred times the multiply it feeds,
and 12 % of a bf16 training epoch in all (``docs/results/speed.md``). numpy draws 16-bit integers in bulk at
about 0.6 ns each (four from each raw PCG64 output); the mask is made directly in the activation's dtype
(its bit pattern, so no slow bool to bf16 cast), and the product is an ordinary autograd multiply. The drop
probability is rounded to a multiple of 2^-16 (0.1 becomes 0.100006) and kept elements are scaled by the
rounded keep probability, so the expectation is exact. Each mask's seed is drawn from torch's generator:
``torch.manual_seed`` decides the masks, and the RNG state a checkpoint saves resumes them. GPU tensors and
compiled graphs keep torch's own dropout. ``docs/results/speed.md`` measures what it saves in whole steps.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gluebench.models.forwards import replaced_forwards

LEVELS = 1 << 16  # a draw is one of 2^16 levels
# a mask is written as the bit pattern of its values: an integer type of the activation's width
_SAME_SIZE_INT: dict[int, tuple[type[np.signedinteger[Any]], torch.dtype]] = {
    2: (np.int16, torch.int16), 4: (np.int32, torch.int32), 8: (np.int64, torch.int64)}


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """A ``shape`` tensor of ``dtype`` holding 0 (dropped, probability ``p`` rounded to 2^-16) or the
    inverse keep probability."""
    dropped = round(p * LEVELS)
    scale = LEVELS / (LEVELS - dropped)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    # each raw 64-bit PCG64 output is four 16-bit draws: 2.2x faster than integers(dtype=int16), which
    # spends an output on each (0.22 against 0.49 ms for a 32 x 31 x 384 mask here)
    words = -(-shape.numel() // 4)
    draws = np.random.default_rng(seed).bit_generator.random_raw(words).view(np.int16)[: shape.numel()]
    numpy_int, torch_int = _SAME_SIZE_INT[torch.empty((), dtype=dtype).element_size()]
    scale_bits = torch.tensor(scale, dtype=dtype).view(torch_int).item()
    kept = draws >= dropped - LEVELS // 2
    return torch.from_numpy(np.multiply(kept, scale_bits, dtype=numpy_int)).view(dtype).view(shape)


def _numpy_mask_forward(module: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    if (not module.training or module.p == 0 or x.device.type != "cpu" or not x.is_floating_point()
            or torch.compiler.is_compiling()):  # a compiled graph draws its masks with inductor's own generator
        return F.dropout(x, module.p, module.training)
    return x * keep_mask(x.shape, module.p, x.dtype)


def numpy_dropout_masks(model: nn.Module) -> contextlib.AbstractContextManager[int]:
    """While the context lasts, every (not in-place) ``nn.Dropout`` of ``model`` draws its masks with numpy;
    yields how many modules changed. Dropout inside attention kernels (``dropout_p``) is left to them; the
    BERT layouts' attention (`bert_layers`) drops its probabilities through the layer's module, so numpy's."""
    return replaced_forwards([(m, _numpy_mask_forward) for m in model.modules()
                              if type(m) is nn.Dropout and not m.inplace])


__all__ = ["LEVELS", "keep_mask", "numpy_dropout_masks"]
