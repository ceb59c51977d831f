"""One run's life: its config assembled into an engine, the run directory it writes (results,
confusion matrices, checkpoints, claims, experiment logs), resuming, and the seed loop."""
