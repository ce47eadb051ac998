"""What archbench measures: the architectures of the four reports, one module per report.

Nothing here times, prints or reads files, and importing sets no global state; ``bench`` does the
measuring. docs/cases.md describes the reports and every case.
"""

from suites.case import Case, Regime, Reported, Stage
from suites.registry import Registry, get_case, registry

#: The suite modules (``suites.<name>``), one per report, in the order docs/cases.md numbers the reports
#: (000–003). Each exports ``SUITE``, ``REPORT`` and ``CASES``, and optionally ``resolve``; the registry
#: reads this list and names no suite itself.
SUITE_MODULES: tuple[str, ...] = ("resnet50_dcn", "dogbreed", "dynconv", "flowers")

__all__ = ["SUITE_MODULES", "Case", "Regime", "Registry", "Reported", "Stage", "get_case", "registry"]
