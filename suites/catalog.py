"""Which suite modules there are: one per report, the only place they are named.

The registry (:mod:`suites.registry`) reads this list and names no suite itself.
"""

from __future__ import annotations

#: The suite modules (``suites.<name>``), one per report, in the order docs/cases.md numbers the reports
#: (000–003). Each exports ``SUITE``, ``REPORT`` and ``CASES``, and optionally ``resolve``.
SUITE_MODULES: tuple[str, ...] = ("resnet50_dcn", "dogbreed", "dynconv", "flowers")
