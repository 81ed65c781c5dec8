"""The ``vigil`` console script: the composition root that builds settings and mounts subcommands."""
