"""Mamba-2's state-space duality (SSD) scan, on :func:`~hybridzoo.ops.chunk_gla`'s scalar decay.

- :func:`chunk_ssd`: chunkwise parallel over a whole sequence;
- :func:`ssd_step`: one decoding step, updating the state in place.

The time-step reference :func:`hybridzoo.ops.ssd.naive.naive_ssd` is for tests.
"""

from hybridzoo.ops.ssd.chunk import chunk_ssd, ssd_step

__all__ = ["chunk_ssd", "ssd_step"]
