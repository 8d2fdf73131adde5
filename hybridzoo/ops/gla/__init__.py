"""Gated linear recurrence kernels shared by the GLA and RWKV-6 layers.

- :func:`chunk_gla`: the chunkwise-parallel form over a whole sequence (training, prefill);
- :func:`gla_step`: one decoding step, updating the state in place.

The time-step reference :func:`hybridzoo.ops.gla.naive.naive_gla` is for tests only.
"""

from hybridzoo.ops.gla.chunk import chunk_gla
from hybridzoo.ops.gla.recurrent import gla_step

__all__ = ["chunk_gla", "gla_step"]
