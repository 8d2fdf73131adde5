"""Package discovery; everything else about the build is in pyproject.toml.

The folder ``plugins/`` installs as the import package ``hybridzoo_plugins``, and setuptools'
``[tool.setuptools.packages.find]`` cannot rename a folder, so the packages are found here, from
the tree: a new builtin plugin is its folder under ``plugins/`` (with an ``__init__.py``) plus its
entry-point line in pyproject.toml. Package data (C++ sources and headers of ``hybridzoo/ops/``,
the scaffold templates) is declared in pyproject.toml.
"""

from setuptools import find_packages, setup


def packages() -> list[str]:
    """``hybridzoo`` and its subpackages, ``hybridzoo_plugins`` and one package per plugin."""
    core = find_packages(include=["hybridzoo", "hybridzoo.*"])
    builtins = [f"hybridzoo_plugins.{name}" for name in find_packages("plugins")]
    return [*core, "hybridzoo_plugins", *builtins]


setup(packages=packages())
