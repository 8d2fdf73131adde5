"""Mamba-2's state-space duality (SSD) scan, on top of :func:`~hybridzoo.ops.chunk_simple_gla`.

- :func:`chunk_ssd`: chunkwise parallel over a whole sequence;
- :func:`ssd_step`: one decoding step, updating the state in place.

The time-step reference :func:`hybridzoo.ops.ssd.naive.naive_ssd` is for tests.
"""

from hybridzoo.ops.ssd.chunk import chunk_ssd, ssd_step

__all__ = ["chunk_ssd", "ssd_step"]
