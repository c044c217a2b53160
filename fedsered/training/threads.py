"""The torch thread count a computation runs at: the one knob that makes a model or a distilled set bit-identical
across machines.

The weight gradients of convolutions (oneDNN) and linear layers (MKL GEMM) sum over the batch in per-thread partial
sums, so their last bits depend on the count (measured with torch 2.13 on CPU: conv weight gradients of one batch
differ by up to ~1e-5 of their largest entry; the tiny test model's weights by 1e-8 to 1e-7 after two epochs). On the
tiny test model forward passes and input gradients were bit-identical at 1 and 2 threads, but not at the default's
shapes: distribution matching (forward passes and input gradients only) of cnn6 on 64 × 94 features gives another
set at 2 threads (``tests/test_distill.py``). Training amplifies those bits: seed 0 of the default federation gave
synthetic sharing 0.656 UAR with clients distilling at 2 threads and 0.633 at 1 (RESULTS.md, "Reproducibility").
So ``train_model``, ``distil`` and a client's DP-SGD run inside ``torch_threads(train.threads)`` (default 1),
whatever the caller or the machine set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block at ``threads`` torch threads, then restore the caller's count.

    Args:
        threads: intra-op threads for the block; 0 leaves the caller's count alone (results then depend on it).
    """
    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
