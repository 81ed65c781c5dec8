"""``vigil demo``: the whole platform on one machine, as deployed, on embedded defaults."""

from vigil_cli.demo.command import app

__all__ = ["app"]
