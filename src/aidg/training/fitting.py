"""One small training loop shared by every branch: seeded mini-batches, AdamW, a progress callback.

Under ``torchrun`` (:mod:`aidg.training.distributed`) the same loop runs on every rank through
DistributedDataParallel: the same permutation everywhere, each rank's slice of each global batch."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from aidg.progress import Progress
from aidg.training import distributed


def fit(
    module: nn.Module,
    loss_fn: Callable[[np.ndarray], torch.Tensor],
    n: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 1e-4,
    label: str = "train",
    progress: Progress | None = None,
    on_epoch: Callable[[int], bool] | None = None,
) -> list[float]:
    """Minimise ``loss_fn(batch_indices)`` over ``n`` examples; returns the mean loss of each epoch.

    ``on_epoch(epoch)`` runs after each epoch (module in eval mode); returning
    True stops training early (e.g. when a validation loss stops improving).
    """
    if n == 0:
        raise ValueError(f"{label}: no training examples (is the history empty?)")
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * ((n + batch_size - 1) // batch_size))
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to 5 %
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    )
    history: list[float] = []
    step = 0
    step_loss = distributed.wrap(module, loss_fn)  # through DDP when several ranks train
    progress = progress if distributed.is_main() else None
    module.train()
    for epoch in range(epochs):
        perm = rng.permutation(n)
        total, count = 0.0, 0
        for lo in range(0, n, batch_size):
            idx = distributed.shard(perm[lo : lo + batch_size])
            loss = step_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            step += 1
            if progress is not None and step % 10 == 0:
                progress(f"{label} epoch {epoch + 1}/{epochs}", step / max(steps, 1))
        total, count = distributed.sum_over_ranks(total, count)
        history.append(total / max(count, 1))
        if on_epoch is not None:
            module.eval()
            stop = distributed.agree(on_epoch(epoch))
            module.train()
            if stop:
                break
    module.eval()
    if progress is not None:
        progress(f"{label} done", 1.0)
    return history

