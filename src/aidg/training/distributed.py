"""Training on several processes: PyTorch DistributedDataParallel, launched by ``torchrun``.

``aidg train --nproc N`` starts N processes through ``torch.distributed.run``
(the engine ``torchrun`` is), or ``torchrun --nproc-per-node N -m aidg.cli
train ...`` does it by hand: each process reads ``RANK`` / ``WORLD_SIZE`` from
the environment, joins the process group (gloo: training runs on CPU tensors)
and runs the whole training. Every rank builds the same split and the same
examples from the same seed; :func:`aidg.training.fitting.fit` wraps the
module in :class:`~torch.nn.parallel.DistributedDataParallel` and gives each
rank its slice of every mini-batch, so one optimiser step sees the same global
batch as one process would (the gradients are averaged across ranks), and
the ranks' parameters stay identical. The early-stopping decision is rank 0's,
broadcast. Rank 0 alone fits the explainers and registers the version.

What stays one process per rank: the full-batch graph branch (each rank runs
the same step: no speed-up there), the sentiment fine-tune (its own loop, the
same seed on every rank) and DP-SGD (``--dp`` with ``--nproc`` > 1 is refused:
Opacus's per-merchant accounting is per process). After the scorer's last step
the other ranks stop and rank 0 takes back one process's threads
(:func:`last_step_done`) for the explainers and the serving inputs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True when ``torchrun`` started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def init_from_env() -> None:
    """Join the process group ``torchrun`` described (idempotent; nothing outside torchrun). Each rank gets an
    equal share of the machine's cores as its intra-op threads."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return
    dist.init_process_group(backend="gloo")
    torch.set_num_threads(max(1, _cores() // dist.get_world_size()))


def last_step_done() -> None:
    """After the last collective step: the other ranks stop, so rank 0 (the explainers, the serving inputs) takes
    back the intra-op threads one process would have (at most 2, as ``aidg train`` on one process)."""
    if active() and is_main():
        torch.set_num_threads(max(1, min(2, _cores())))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(idx: np.ndarray) -> np.ndarray:
    """This rank's slice of a global mini-batch (every rank takes the whole batch when it has fewer examples than
    there are ranks: DDP needs every rank to take a step)."""
    w = world()
    return idx if w == 1 or len(idx) < w else idx[rank() :: w]


class LossModule(nn.Module):
    """A module whose forward is a loss over example indices, so DDP's gradient hooks see every step."""

    def __init__(self, module: nn.Module, loss_fn: Callable[[np.ndarray], torch.Tensor]) -> None:
        super().__init__()
        self.inner = module
        self.loss_fn = loss_fn

    def forward(self, idx: np.ndarray) -> torch.Tensor:
        return self.loss_fn(idx)


def wrap(module: nn.Module, loss_fn: Callable[[np.ndarray], torch.Tensor]) -> Callable[[np.ndarray], torch.Tensor]:
    """``loss_fn`` through DistributedDataParallel when several ranks train (parameters broadcast from rank 0
    first), else ``loss_fn`` itself."""
    if not active():
        return loss_fn
    return nn.parallel.DistributedDataParallel(LossModule(module, loss_fn))


def sum_over_ranks(total: float, count: int) -> tuple[float, int]:
    """A per-rank running loss's sum and count, each summed over the ranks."""
    if not active():
        return total, count
    t = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0]), int(t[1])


def agree(flag: bool) -> bool:
    """Rank 0's answer, on every rank (early stopping must stop every rank at the same epoch)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64)
    dist.broadcast(t, 0)
    return bool(t.item())


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``aidg <argv>`` in ``nproc`` processes under ``torch.distributed.run`` (a standalone rendezvous on
    this machine); returns its exit status."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "aidg.cli", *argv]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.call(cmd, env=env)


__all__ = ["active", "agree", "init_from_env", "is_main", "last_step_done", "launch", "launched", "rank",
           "shard", "shutdown", "sum_over_ranks", "world", "wrap"]  # fmt: skip
