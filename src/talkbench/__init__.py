"""talkbench: one versioned protocol for multilingual talking-head generation.

The subpackages are the architecture (see ARCHITECTURE.md): ``media`` and ``face`` are the
shared foundations; ``metrics``, ``datasets``, ``baselines``, ``vqtalker`` and ``leaderboard``
build on them; ``cli`` fronts them all.
"""

__version__ = "0.1.0"
