"""Builtin hybridzoo layer plugins; each subpackage is registered through its own entry point."""
