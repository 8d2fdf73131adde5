"""Declarations of the option kinds that many layers share, each an :func:`~hybridzoo.spec.option`
field with the kind's validator, examples and (where it is the same everywhere) sentence::

    from hybridzoo.plugin import chunk_size_option, count_option, heads_option

    @attrs.frozen
    class MyOptions:
        num_heads: int = heads_option(4, doc="Retention heads.")
        head_dim: int = count_option(32, doc="Query/key width per head.", examples=(4, 8))
        chunk_size: int = chunk_size_option("retention")

A layer passes what differs (its default, its own sentence, its examples); each call is the one
declaration of that option, so ``hybridzoo layers`` shows the sentence given here. The fields are
ordinary ``option`` fields: a record may mix them with ``option(...)`` written out in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hybridzoo.spec import option
from hybridzoo.validate import at_least, boolean, positive, power_of_two

__all__ = [
    "chunk_size_option",
    "conv_size_option",
    "count_option",
    "flag_option",
    "heads_option",
    "norm_eps_option",
    "positive_option",
]


def count_option(
    default: int, *, doc: str, minimum: int = 1, examples: Sequence[Any] | None = None
) -> Any:
    """A whole number of at least ``minimum`` (a width, a rank, a number of experts, ...)."""
    return option(default, doc=doc, validator=at_least(minimum), examples=examples)


def heads_option(
    default: int = 4, *, doc: str = "Number of heads.", examples: Sequence[Any] = (1, 2)
) -> Any:
    """A number of heads, at least 1 (examples 1 and 2 unless given)."""
    return count_option(default, doc=doc, examples=examples)


def conv_size_option(
    doc: str, *, default: int = 4, minimum: int = 1, examples: Sequence[Any] = (1, 2, 3)
) -> Any:
    """The kernel (taps) of a depthwise causal convolution; ``doc`` says over what it runs."""
    return count_option(default, doc=doc, minimum=minimum, examples=examples)


def chunk_size_option(kernel: str = "recurrence", *, default: int = 64) -> Any:
    """The chunk length of a chunked kernel, a power of two that changes the speed only; the
    sentence names the ``kernel`` ("the SSD kernel", "the WKV kernel", ...)."""
    return option(
        default,
        doc=f"Chunk length of the {kernel} kernel, a power of two (speed only; same results).",
        validator=power_of_two,
        examples=(4,),
    )


def positive_option(default: float, *, doc: str, examples: Sequence[Any] | None = None) -> Any:
    """A real number > 0 (a time step, a scale, ...)."""
    return option(default, doc=doc, validator=positive, examples=examples)


def norm_eps_option(norm: str = "RMSNorm", *, default: float = 1e-5) -> Any:
    """The epsilon of a normalisation; the sentence names the ``norm`` ("gated RMSNorm", ...)."""
    return positive_option(default, doc=f"Epsilon of the {norm}.")


def flag_option(default: bool, *, doc: str, examples: Sequence[Any] | None = None) -> Any:
    """A boolean; the conformance kit also tries the other value unless ``examples`` says
    otherwise (``examples=()`` for a flag that needs another option set)."""
    return option(
        default,
        doc=doc,
        validator=boolean,
        examples=(not default,) if examples is None else examples,
    )
