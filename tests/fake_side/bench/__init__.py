"""A stand-in for an archbench checkout, for testing ``bench ab``'s controller without torch."""

__version__ = "0.0-fake"
