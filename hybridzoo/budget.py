"""Budget matching: the width (and the layers' options scaled to it) at which a pattern meets a
budget of parameters, FLOPs per token or state bytes, from the formulas (nothing built).

Every layer sizes its own options to a width through its spec's ``scale_options`` (heads split
the width, a window covers the sequence), and the options the caller gives (keywords, a
dialect's implied options, a position's own options) win over the scaling, so a third-party
layer is matched as fairly as a builtin. The widths tried are the multiples of ``multiple`` up
to ``max_hidden_size``: doubling until the budget is passed, then every multiple in between.

    >>> match = hybridzoo.match_budget("C C P", params=1_000_000)  # doctest: +SKIP
    >>> match.hidden_size, match.relative_error  # doctest: +SKIP
    >>> model = hybridzoo.build("C C P", embed_dim=64, **match)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hybridzoo.cost import CostCard, cost
from hybridzoo.counting import scale_layer_options
from hybridzoo.dict_backed import DictBacked
from hybridzoo.errors import HybridZooError, OptionError
from hybridzoo.model_options import MODEL_OPTIONS, with_model_options
from hybridzoo.registry import Registry, get_registry
from hybridzoo.validate import at_least

__all__ = ["METRICS", "BudgetMatch", "match_budget"]

#: The budgets :func:`match_budget` matches, each read from a :class:`~hybridzoo.CostCard`.
METRICS: dict[str, Callable[[CostCard], float | None]] = {
    "params": lambda card: card.params,
    "active_params": lambda card: card.active_params,
    "flops_per_token": lambda card: card.flops_per_token,
    "state_bytes": lambda card: card.state_bytes,
}


class BudgetMatch(DictBacked):
    """The options that meet a budget (a mapping: ``build(pattern, **match)``), and how close
    they got: :attr:`achieved` against :attr:`target` (:attr:`relative_error`)."""

    __slots__ = ("achieved", "card", "hidden_size", "metric", "options", "target", "widths")

    def __init__(
        self, metric: str, target: float, achieved: float, options: dict[str, Any], card: Any,
        widths: int,
    ) -> None:  # fmt: skip
        self.metric, self.target, self.achieved = metric, target, achieved
        self.options, self.card, self.widths = options, card, widths
        self.hidden_size: int = options["hidden_size"]

    @property
    def relative_error(self) -> float:
        """``(achieved - target) / target``: negative below the budget, positive above."""
        return (self.achieved - self.target) / self.target

    def _items(self) -> dict[str, Any]:
        return self.options

    def __str__(self) -> str:
        side = "above" if self.achieved > self.target else "below"
        return (
            f"hidden_size={self.hidden_size}: {self.metric} {self.achieved:,.0f}, "
            f"{abs(self.relative_error):.2%} {side} the budget {self.target:,.0f} "
            f"({self.widths} widths tried)"
        )

    def __repr__(self) -> str:
        return f"BudgetMatch({self}, options={self.options!r})"


def _budget(budgets: Mapping[str, Any]) -> tuple[str, float]:
    given = {k: v for k, v in budgets.items() if v is not None}
    if len(given) != 1:
        raise OptionError(
            f"match_budget takes one budget, got {len(given)}: give exactly one of "
            f"{', '.join(f'{k}=' for k in METRICS)}"
        )
    ((metric, target),) = given.items()
    if isinstance(target, bool) or not isinstance(target, int | float) or not target > 0:
        raise OptionError(f"{metric} must be a number > 0, got {target!r}")
    return metric, float(target)


@with_model_options
def match_budget(
    pattern: Any,
    *,
    params: float | None = None,
    active_params: float | None = None,
    flops_per_token: float | None = None,
    state_bytes: float | None = None,
    seq_len: int = 2048,
    dtype: Any = "float32",
    multiple: int = 8,
    max_hidden_size: int = 16384,
    vocab_size: int | None = None,
    tie: bool = True,
    extra: Callable[[int, dict[str, Any]], tuple[int, float]] | None = None,
    dialect: str = "native",
    model_type: str | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> BudgetMatch:
    """The hidden size, and the layers' options scaled to it, that bring ``pattern`` closest to
    one budget; a budget outside what the widths ``multiple .. max_hidden_size`` span is an
    :class:`~hybridzoo.OptionError` naming that span (never a silent clip).

    Args:
        pattern: any form :func:`hybridzoo.build` takes (``dialect``, ``model_type`` as there).
        params, active_params, flops_per_token, state_bytes: the budget (exactly one):
            parameters (all, or used per token), forward FLOPs per token at ``seq_len``, or
            step-state bytes of one sequence in ``dtype`` (see :func:`hybridzoo.cost`).
        seq_len, dtype: where FLOPs and state are counted; ``seq_len`` is also given to the
            layers' ``scale_options`` (a window that covers the sequence).
        multiple, max_hidden_size: the widths tried.
        vocab_size, tie: for a language model around the pattern: its embedding
            (``vocab_size·embed_dim`` parameters) and head (``vocab_size·hidden_size`` more
            unless tied to the embedding; ``2·hidden_size·vocab_size`` FLOPs per token).
        extra: ``(hidden_size, options) -> (parameters, FLOPs per token)`` of anything else
            around the pattern (``options``: those of the width tried, as :func:`build` takes
            them).
        **options: model and layer options as :func:`hybridzoo.build` takes them (not
            ``hidden_size``: that is what is matched); they win over the scaled options.

    Returns a :class:`BudgetMatch`: the options to build with, ``hidden_size`` included.
    """
    from hybridzoo.dialects import coerce_pattern

    registry = registry or get_registry()
    metric, target = _budget(
        {"params": params, "active_params": active_params,
         "flops_per_token": flops_per_token, "state_bytes": state_bytes}
    )  # fmt: skip
    if "hidden_size" in options:
        raise OptionError("match_budget chooses hidden_size: do not give it")
    multiple = at_least(1).check("multiple", multiple)
    top = at_least(multiple).check("max_hidden_size", max_hidden_size) // multiple
    pattern = coerce_pattern(pattern, dialect, model_type=model_type, registry=registry)
    model = {k: v for k, v in options.items() if k in MODEL_OPTIONS}
    layers = {**dict(getattr(pattern, "layer_options", ())), **{
        k: v for k, v in options.items() if k not in MODEL_OPTIONS
    }}  # fmt: skip
    problems: dict[int, str] = {}
    seen: dict[int, tuple[float, dict[str, Any], CostCard] | None] = {}

    def measure(k: int) -> float | None:
        if k not in seen:
            hidden = k * multiple
            try:
                scaled = scale_layer_options(
                    pattern, hidden, seq_len=seq_len, user_options=layers, registry=registry
                )
                chosen = {**model, "hidden_size": hidden, **scaled}
                card = cost(pattern, seq_len=seq_len, dtype=dtype, registry=registry, **chosen)
            except HybridZooError as exc:
                problems[hidden] = str(exc).splitlines()[0]
                seen[k] = None
            else:
                value = METRICS[metric](card)
                if value is None:
                    raise OptionError(
                        f"the {metric} of {', '.join(card.unknown) or 'a layer'} are unknown "
                        "(no formula, or a state that grows without bound): no budget of "
                        f"{metric} can be matched"
                    )
                value += _around(metric, hidden, chosen, card, vocab_size, tie, extra)
                seen[k] = (value, chosen, card)
        found = seen[k]
        return None if found is None else found[0]

    low, k = 0, 1
    while k <= top:
        value = measure(k)
        if value is None:
            k += 1
            continue
        if value >= target:
            break
        low, k = k, min(2 * k, top) if k < top else top + 1
    high = min(k, top)
    while high - low > 1:  # the crossing, by bisection (a width the layers refuse is skipped)
        mid = (low + high) // 2
        probe = next((j for j in range(mid, high) if measure(j) is not None), None)
        if probe is None:
            break
        if measure(probe) < target:  # type: ignore[operator]
            low = probe
        else:
            high = probe
    for j in range(max(low - 3, 1), min(high + 3, top) + 1):  # scaled options may round
        measure(j)
    valid = {j: found for j, found in seen.items() if found is not None}
    if not valid:
        last = next(reversed(problems.items()), (0, "no width tried"))
        raise OptionError(
            f"no hidden size up to {max_hidden_size} is valid for this pattern: "
            f"hidden_size={last[0]}: {last[1]}"
        )
    values = {j: found[0] for j, found in valid.items()}
    smallest, largest = values[min(values)], values[max(values)]
    if target < smallest:
        raise OptionError(
            f"the budget {metric}={target:,.0f} is out of reach: the smallest width, "
            f"hidden_size={min(values) * multiple}, already gives {smallest:,.0f} (a smaller "
            "multiple=, or smaller options, may reach it)"
        )
    if target > largest and max(values) * multiple >= max_hidden_size:
        raise OptionError(
            f"the budget {metric}={target:,.0f} is out of reach: the largest width, "
            f"hidden_size={max(values) * multiple} (max_hidden_size), gives {largest:,.0f} "
            "(raise max_hidden_size=)"
        )
    best = min(values, key=lambda j: (abs(values[j] - target), j))
    value, chosen, card = valid[best]
    return BudgetMatch(metric, target, value, chosen, card, len(seen))


def _around(
    metric: str,
    hidden: int,
    chosen: dict[str, Any],
    card: CostCard,
    vocab_size: int | None,
    tie: bool,
    extra: Callable[[int, dict[str, Any]], tuple[int, float]] | None,
) -> float:
    """What a language model adds around the pattern: embedding, head, ``extra``."""
    if metric == "state_bytes":
        return 0
    params = flops = 0.0
    if vocab_size is not None:
        embed = next((r.params for r in card.rows if r.layer == "input_proj"), None)
        embed_dim = hidden if embed is None else (embed - hidden) // hidden
        params += vocab_size * embed_dim + (
            0 if tie and embed_dim == hidden else vocab_size * hidden
        )
        flops += 2 * hidden * vocab_size
    if extra is not None:
        more_params, more_flops = extra(hidden, dict(chosen))
        params, flops = params + more_params, flops + more_flops
    return flops if metric == "flops_per_token" else params
