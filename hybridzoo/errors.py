"""The library's exceptions: one base class, one subclass per kind of mistake.

Every message names the offending value, says what would be valid and, for a misspelt name, lists
the close matches.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "DialectWarning",
    "HybridZooError",
    "OptionError",
    "PackingError",
    "PatternError",
    "PluginConflictError",
    "PluginError",
    "ShapeError",
    "StateError",
    "StepModeWarning",
    "UnknownLayerError",
    "UnknownOptionError",
    "UnusedOptionWarning",
    "close_matches",
    "did_you_mean",
]


_PACKAGE = Path(__file__).resolve().parent


def user_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that points at the first frame outside the
    hybridzoo package (the user's call), however deep inside the library the warning is raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (``difflib`` ratio ≥ 0.6), best first."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` (or ``'x' or 'y'``), or an empty string when nothing is close."""
    matches = close_matches(word, candidates)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


class HybridZooError(Exception):
    """Base class of every error hybridzoo raises on purpose."""


class UnknownLayerError(HybridZooError, KeyError):
    """A layer name or symbol that no registered plugin provides.

    Attributes: ``name`` (what was asked for) and ``matches`` (close registered names).
    ``hint``, when given, says how to get the layer (e.g. the distribution that provided it).
    """

    def __init__(
        self, name: object, known: Sequence[str], *, what: str = "layer", hint: str = ""
    ) -> None:
        self.name = name
        listing = ", ".join(sorted(known)) or "(none registered)"
        if isinstance(name, str):
            self.matches = close_matches(name, known)
            msg = f"unknown {what} {name!r}.{did_you_mean(name, known)}"
        else:
            self.matches = []
            msg = f"a {what} must be given by its name or symbol (a str), got {name!r}."
        msg += f" {hint}" if hint else ""
        super().__init__(f"{msg} Registered: {listing}.")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class OptionError(HybridZooError, ValueError):
    """One or more bad options of a call, all reported together.

    ``problems`` holds one human-readable line per problem.
    """

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            msg = self.problems[0]
        else:
            msg = f"{len(self.problems)} problems with the options:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(msg)


class UnknownOptionError(OptionError, TypeError):
    """A keyword that is not a field of the options record a module is built from (a
    ``TypeError``, as any unknown keyword argument is)."""


#: a pattern longer than this is quoted in an error as a window around the fault
PATTERN_WINDOW = 72


def caret_lines(text: str, position: int, width: int = PATTERN_WINDOW) -> str:
    """``text`` with a caret under ``position``, as two indented lines; a longer text is cut to
    a window of about ``width`` characters around the position (``…`` marks the cuts), and
    tabs and newlines are shown as spaces so that the caret lines up."""
    position = max(0, min(position, len(text)))
    start, end = 0, len(text)
    if len(text) > width:
        start = max(0, min(position - width // 2, len(text) - width))
        end = min(len(text), start + width)
    shown = text[start:end].translate(str.maketrans("\t\n\r", "   "))
    lead = "…" if start else ""
    tail = "…" if end < len(text) else ""
    return f"  {lead}{shown}{tail}\n  {' ' * (len(lead) + position - start)}^"


class PatternError(HybridZooError, ValueError):
    """A layer pattern that cannot be parsed or resolved; points at the offending position
    (``position``, 0-based in ``pattern``), quoting at most a window of a long pattern."""

    def __init__(self, message: str, *, pattern: object = None, position: int | None = None):
        self.pattern = pattern
        self.position = position
        if isinstance(pattern, str) and position is not None:
            message = f"{message}\n{caret_lines(pattern, position)}"
        super().__init__(message)


class ConfigError(HybridZooError, ValueError):
    """A configuration (model options or a saved config) that is invalid."""


class CheckpointError(HybridZooError, ValueError):
    """A saved file (model weights, an arena checkpoint) that is truncated, corrupted, foreign or
    does not match its configuration."""


class ConversionError(HybridZooError, ValueError):
    """A model that cannot be converted to or from another library's: an architecture that no
    plugin converts, or a setting that has no equivalent (named in the message)."""


class ShapeError(HybridZooError, ValueError):
    """An input that does not fit the model: not a tensor, or a tensor of the wrong shape or
    dtype."""


class PackingError(ShapeError):
    """Packed documents (``seq_idx`` or ``cu_seqlens``) that are malformed, or that the model
    cannot take (a layer that does not declare ``capabilities.packing``)."""


class StateError(HybridZooError, ValueError):
    """A step-mode state that does not fit the model or the input."""


class PluginError(HybridZooError):
    """A plugin that could not be loaded, or whose spec breaks the plugin contract.

    ``plugin`` names the plugin (entry-point name or ``<runtime>``) and ``distribution`` the
    installed distribution that supplied it, when known.
    """

    def __init__(
        self, message: str, *, plugin: str | None = None, distribution: str | None = None
    ) -> None:
        self.plugin = plugin
        self.distribution = distribution
        super().__init__(message)


class PluginConflictError(PluginError):
    """Two plugins claim one layer name, symbol or option prefix."""


class StepModeWarning(UserWarning):
    """Step mode used in a way that cannot match ``forward`` (dropout active in training mode).

    Step mode (``init_state``/``step``/``prefill``) is for inference: states are updated in place
    and autograd does not run through them."""


class DialectWarning(UserWarning):
    """A pattern read from or written in another project's notation whose meaning differs there
    in a way the message names (a setting the notation cannot hold, another activation)."""


class UnusedOptionWarning(UserWarning):
    """A valid option of a registered layer that the model being built does not contain."""
