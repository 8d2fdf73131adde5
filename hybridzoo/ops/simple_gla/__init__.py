"""The linear recurrence with a scalar decay per head and grouped queries/keys (simple GLA).

- :func:`chunk_simple_gla`: chunkwise parallel over a whole sequence (training, prefill);
- :func:`simple_gla_step`: one decoding step, updating the state in place.

The time-step reference :func:`hybridzoo.ops.simple_gla.naive.naive_simple_gla` is for tests.
"""

from hybridzoo.ops.simple_gla.chunk import chunk_simple_gla
from hybridzoo.ops.simple_gla.recurrent import simple_gla_step

__all__ = ["chunk_simple_gla", "simple_gla_step"]
