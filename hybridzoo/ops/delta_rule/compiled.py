"""The compiled backend of the gated delta rule (``delta_rule.cpp``, sharing the gated linear
recurrence's helpers and autograd Function): the recurrence position by position per
(batch row, head), the backward pass recomputing one block of states at a time."""

from __future__ import annotations

from pathlib import Path

from hybridzoo.ops._compile import Kernel
from hybridzoo.ops.gla import compiled as linear

KERNEL = Kernel(
    Path(__file__).with_name("delta_rule.cpp"), "hybridzoo_gated_delta_rule", linear.KERNEL.headers
)
