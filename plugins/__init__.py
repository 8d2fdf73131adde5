"""Builtin hybridzoo plugins (import package ``hybridzoo_plugins``); each subpackage reaches the
core only through its own entry point in the group ``hybridzoo.layers``, as a third-party plugin.

Adding a builtin layer, step by step:

1. Make the folder ``plugins/<name>/`` (``<name>`` a lower-case identifier) with
   ``__init__.py``: the options record (``@attrs.frozen``, each field declared once with
   ``hybridzoo.plugin.option(default, doc=..., validator=..., examples=...)`` and a validator of
   ``hybridzoo.plugin``), ``SPEC = LayerSpec(...)`` and the ``@hookimpl`` function
   ``hybridzoo_layer_specs()`` returning ``[SPEC]``; no torch import here.
2. ``formulas.py``: torch-free functions of the record, ``param_count(o, hidden_size)``,
   ``state_size(o, hidden_size)`` (elements per sequence; none for a positionwise layer),
   ``scale_options(o, hidden_size, *, seq_len=None)`` when a width follows the model width,
   ``active_param_count`` for a mixture of experts. No ``**kwargs``, no ``del``, no option
   defaults repeated.
3. ``layer.py``: the ``nn.Module`` bodies with their own keyword defaults, one cheap check per
   invariant through ``hybridzoo.validate`` (``at_least(1).check("num_heads", n)``), and
   ``make_bodies(o, hidden_size)`` passing explicit keywords once. A layer acting on each
   position alone declares ``Capabilities(positionwise=True)`` and nothing else about step mode.
4. ``reference.py``: the slow time-step reference reading the module's weights; optionally
   ``convert.py`` (to/from transformers).
5. In ``SPEC``: ``factory="hybridzoo_plugins.<name>.layer:make_bodies"``,
   ``reference="hybridzoo_plugins.<name>.reference:..."``, the formulas, one free ASCII
   uppercase symbol (``hybridzoo layers`` lists the taken ones) and an option prefix that is not
   another layer's prefix followed by ``_`` and part of its field names.
6. Add one line to ``[project.entry-points."hybridzoo.layers"]`` in ``pyproject.toml``
   (``<name> = "hybridzoo_plugins.<name>"``) and run ``pip install -e .``; the packages are found
   from the folders (``setup.py``), C++ sources and headers under ``hybridzoo/ops/`` are package
   data, so nothing else is listed by hand.
7. Tests in ``tests/plugins/test_<name>.py`` (fast path vs reference, step/prefill vs forward,
   counts); the conformance kit runs on every registered layer (``tests/test_conformance.py``).

A named pattern is a :class:`hybridzoo.plugin.NamedPattern` returned by a
``hybridzoo_named_patterns`` hook (the builtin ones: :mod:`hybridzoo_plugins.patterns`).
"""
