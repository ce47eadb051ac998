"""The registry that names the cases.

A suite module exports a tuple ``CASES`` and, if it builds further configurations on demand, a
:data:`~suites.case.Resolver` called ``resolve``; nothing is registered as a side effect of importing
it. :func:`registry` gathers the modules :mod:`suites.catalog` lists, once, and refuses duplicate
names. This module names no suite.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
from collections.abc import Iterable, Iterator, Mapping
from types import ModuleType

# Re-exported: the case types lived here before suites/case.py, and bench imports them from here.
from suites.case import Builder, Case, Loss, Optimizer, Regime, Reported, Resolver, Schedule, Stage
from suites.catalog import SUITE_MODULES

__all__ = [
    "Builder", "Case", "Loss", "Optimizer", "Regime", "Registry", "Reported", "Resolver", "Schedule",
    "Stage", "get_case", "registry",
]

_GLOB_CHARS = frozenset("*?[")


class Registry(Mapping[str, Case]):
    """Cases by name, in suite order. Refuses two cases with one name.

    As a mapping it holds the listed cases only; :meth:`get_case` and :meth:`select` also ask the
    ``resolvers`` for exact names the mapping does not hold.
    """

    def __init__(self, cases: Iterable[Case], resolvers: Iterable[Resolver] = ()) -> None:
        self._cases: dict[str, Case] = {}
        for case in cases:
            if case.name in self._cases:
                raise ValueError(f"duplicate case name {case.name!r} (suite {case.suite!r})")
            self._cases[case.name] = case
        self._resolvers = tuple(resolvers)
        self._reports: dict[str, str] = {}
        for case in self._cases.values():
            self._reports.setdefault(case.suite, case.report)

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> Registry:
        """The cases of suite modules (their ``CASES``), with each module's ``resolve`` if it has one."""
        modules = list(modules)
        resolvers = [m.resolve for m in modules if callable(getattr(m, "resolve", None))]
        return cls((case for m in modules for case in m.CASES), resolvers)

    def __getitem__(self, name: str) -> Case:
        try:
            return self._cases[name]
        except KeyError:
            raise KeyError(f"unknown case {name!r}; `bench list` shows the cases") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._cases)

    def __len__(self) -> int:
        return len(self._cases)

    @property
    def suites(self) -> tuple[str, ...]:
        """The suites of the listed cases, in registry order."""
        return tuple(self._reports)

    @property
    def reports(self) -> Mapping[str, str]:
        """Suite → the report its cases come from (:attr:`Case.report`), in registry order."""
        return dict(self._reports)

    def get_case(self, name: str) -> Case:
        """The listed case ``name``, else the one a resolver builds (KeyError if none does)."""
        if name in self._cases:
            return self._cases[name]
        for resolve in self._resolvers:
            case = resolve(name)
            if case is not None:
                if case.name != name:
                    raise ValueError(f"resolver {resolve!r} answered {name!r} with case {case.name!r}")
                return case
        return self[name]

    def select(self, patterns: Iterable[str] = (), suites: Iterable[str] = ()) -> list[Case]:
        """Cases whose name matches any glob in ``patterns`` and whose suite is in ``suites``
        (an empty filter admits everything). A pattern without glob characters that names no listed
        case is given to the resolvers, so that a configuration a suite builds on demand can be selected
        by its exact name. Unknown suite names are an error."""
        patterns, suites = list(patterns), list(suites)
        unknown = [s for s in suites if s not in self._reports]
        if unknown:
            raise KeyError(f"unknown suite(s) {unknown}; known: {sorted(self._reports)}")
        chosen = [
            c
            for c in self._cases.values()
            if not patterns or any(fnmatch.fnmatchcase(c.name, p) for p in patterns)
        ]
        for name in dict.fromkeys(patterns):
            if name not in self._cases and not _GLOB_CHARS & set(name):
                try:
                    chosen.append(self.get_case(name))
                except KeyError:
                    pass  # names nothing: like a glob that matches nothing
        return [c for c in chosen if not suites or c.suite in suites]


@functools.cache
def registry() -> Registry:
    """Every case of every suite module :data:`suites.catalog.SUITE_MODULES` lists, gathered once on first use."""
    return Registry.from_modules(importlib.import_module(f"suites.{name}") for name in SUITE_MODULES)


def get_case(name: str) -> Case:
    """The case called ``name``: a listed one, or one a suite builds on demand (docs/cases.md says which).
    KeyError for an unknown name, ValueError for an invalid configuration."""
    return registry().get_case(name)

