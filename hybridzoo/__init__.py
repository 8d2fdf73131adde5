"""hybridzoo."""
