"""How archbench measures: static cost, per-phase time and memory, fixed-budget accuracy, comparison."""

__version__ = "0.3.0"
