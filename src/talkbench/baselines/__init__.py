"""Baselines: one adapter protocol (method metadata + ``generate(task)`` → video) for every
method in the papers' tables: built-in bounds, external checkouts run as subprocesses,
imported released outputs, and VQTalker itself."""
