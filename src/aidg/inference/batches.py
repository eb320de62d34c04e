"""Running any trained encoder over many rows in fixed-size batches, without gradients (training and serving)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


@torch.inference_mode()
def predict_batches(fn: Callable[[np.ndarray], torch.Tensor], n: int, batch_size: int = 512) -> np.ndarray:
    """Concatenate ``fn(batch_indices)`` over all ``n`` examples, in order, without gradients."""
    outs = [fn(np.arange(lo, min(n, lo + batch_size))).detach().cpu().numpy() for lo in range(0, n, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,))
