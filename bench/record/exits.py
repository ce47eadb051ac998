"""Exit codes of every ``bench`` command, in one place.

The outcome of a comparison (:mod:`bench.judge.verdicts`), an unusable input file
(:mod:`bench.record.results`), a refused output (:mod:`bench.record.write`) and a crash of the tool
(:mod:`bench.commands`) each map to one code here; the renderers only show them. ``pytest bench/`` keeps
pytest's own codes (4 for a bad option, 1 for a failed case) and uses :data:`EXIT_UNUSABLE` for an
output it cannot write.
"""

from __future__ import annotations

EXIT_OK = 0
#: A regression, or a case that newly fails (``bench compare``).
EXIT_REGRESSION = 1
#: A case that failed to measure (``bench profile``), as pytest fails a run with a failed test.
EXIT_FAILED = 1
#: Unusable input: a missing, empty, truncated or malformed file, or a bad argument.
EXIT_UNUSABLE = 2
#: Runs not comparable (different device or profile) and not overridden.
EXIT_INCOMPARABLE = 3
#: The tool itself crashed (EX_SOFTWARE); never 1, so CI can tell a crash from a regression.
EXIT_CRASH = 70
#: Interrupted (Ctrl-C or SIGTERM): 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED = 130
