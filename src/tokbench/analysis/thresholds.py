"""The comparison's default thresholds, declared once. A module of their own, with no imports, so the command line
can show them in ``--help`` and as flag defaults without importing the statistics (``analysis.compare`` pulls in
scipy.stats: most of a read command's start-up time)."""

from __future__ import annotations

DEFAULT_MIN_EFFECT = 0.02  # a change smaller than 2% is "below min-effect", not a verdict
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.80
