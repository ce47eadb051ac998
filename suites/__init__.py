"""What archbench measures: the architectures of the four reports, one module per report.

Nothing here times, prints or reads files, and importing sets no global state; ``bench`` does the
measuring. docs/cases.md describes the reports and every case.
"""

from suites.case import Case, Regime, Reported, Stage
from suites.catalog import SUITE_MODULES
from suites.registry import Registry, get_case, registry

__all__ = ["SUITE_MODULES", "Case", "Regime", "Registry", "Reported", "Stage", "get_case", "registry"]
