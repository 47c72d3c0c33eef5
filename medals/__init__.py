"""medals: medical-imaging competition recipes on one engine."""

__version__ = "0.1.0"
