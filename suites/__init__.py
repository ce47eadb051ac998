"""What archbench measures: the architectures of the four reports, one module per report.

Nothing here times, prints or reads files; ``bench`` does the measuring.
"""

from suites.registry import SUITE_MODULES, Case, Regime, Registry, Reported, Stage, get_case, registry

__all__ = ["SUITE_MODULES", "Case", "Regime", "Registry", "Reported", "Stage", "get_case", "registry"]
