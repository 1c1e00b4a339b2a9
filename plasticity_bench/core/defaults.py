"""Defaults that the command line shows before anything heavy is imported (``--help`` answers at once)."""

import math

#: Updates per point of a record's within-task learning curve: a full Permuted-MNIST run (500 tasks x 625
#: updates) stores 500 x 20 = 10,000 points [ours] (docs/protocol.md §1).
CURVE_BIN = 32
#: When a run saves its training state (``--checkpoint-every``) [ours]: a few MB every 10 minutes costs
#: nothing next to the run.
CHECKPOINT_EVERY = "10m"
#: The published tables ``plasticity-bench reproduce`` knows (docs/protocol.md §10).
TABLE_NAMES = ("lc26-table14", "lc26-leaderboard")

#: Rows of one evaluation batch (checkpoint accuracy) and the most input values it may hold [ours]: 1000
#: rows up to CIFAR's 3 x 32 x 32 images, 111 of 3 x 224 x 224 (a VGG11 forward of 1000 such images would
#: hold tens of GiB of activations).
EVAL_ROWS, EVAL_VALUES = 1000, 1 << 24


def eval_batch_size(input_shape: tuple[int, ...]) -> int:
    """Rows per evaluation batch for inputs of ``input_shape``: ``min(EVAL_ROWS, EVAL_VALUES // size)``,
    at least 1."""
    return max(1, min(EVAL_ROWS, EVAL_VALUES // math.prod(input_shape)))
