"""The options table of a plugin's README, produced from its spec (torch-free)."""

from __future__ import annotations

import attrs

from hybridzoo.spec import LayerSpec

__all__ = ["options_table"]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def options_table(spec: LayerSpec) -> str:
    """A Markdown table of ``spec``'s options: the user's name (``<prefix>_<field>``), the
    default and the field's ``doc``, one row per field in declaration order.

    The README that ``hybridzoo new-plugin`` writes holds this table, and the generated tests
    check that it is up to date: the options are declared once, in the options record.
    """
    rows = ["| option | default | meaning |", "| --- | --- | --- |"]
    for field in attrs.fields(spec.options):
        doc = field.metadata.get("doc") or "(no doc)"
        rows.append(f"| `{spec.option_prefix}_{field.name}` | `{field.default!r}` | {_cell(doc)} |")
    return "\n".join(rows)
