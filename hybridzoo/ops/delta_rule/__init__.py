"""The gated delta rule (Gated DeltaNet, Qwen3-Next's linear attention).

- :func:`chunk_gated_delta_rule`: chunkwise parallel in the WY / UT-transform form;
- :func:`gated_delta_rule_step`: one decoding step, updating the state in place.

The time-step reference :func:`hybridzoo.ops.delta_rule.naive.naive_gated_delta_rule` is for
tests.
"""

from hybridzoo.ops.delta_rule.chunk import chunk_gated_delta_rule
from hybridzoo.ops.delta_rule.recurrent import gated_delta_rule_step

__all__ = ["chunk_gated_delta_rule", "gated_delta_rule_step"]
