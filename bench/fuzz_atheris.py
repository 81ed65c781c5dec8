"""The atheris child of :mod:`bench.fuzz`: ``python -m bench.fuzz_atheris TARGET [libFuzzer flags] CORPUS``.

Vigil's modules are imported under ``atheris.instrument_imports()`` so libFuzzer sees their
coverage; an exception escaping the target is a crash (traceback on stderr, the input saved
under ``-artifact_prefix``).
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-not-found,unused-ignore]

__all__ = ["main"]


def main() -> None:
    name, flags = sys.argv[1], sys.argv[2:]
    with atheris.instrument_imports(include=["edge_agent", "ingest", "rpm_core", "bench"]):
        from bench.fuzz_targets import TARGETS
    target = TARGETS[name]
    target.seeds()  # build the keys and seeds before fuzzing starts
    atheris.Setup([sys.argv[0], *flags], target.check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
