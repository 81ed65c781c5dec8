"""What the edge agent's imports cost in resident memory. Prints JSON.

In a fresh interpreter (this process: run it as ``python -m bench.edge_imports``), imports what
``vigil edge run`` imports (the console script's ``vigil_cli.main`` and ``edge_agent.run``) with a hook on
``__import__`` that reads the resident set (``/proc/self/statm``) before and after each module's
first import. ``modules`` lists the ``--top`` heaviest, each with ``mb``: the growth of the resident
set while it and everything it imported for the first time were loaded (so a package's figure
includes its dependencies that nothing loaded before it), and ``depth`` in the import tree.
``packages`` splits the same growth by top-level package, each import counted once, without what it
imported from other packages (a module's submodules loaded by ``from package import module`` or
relative imports count as its own): what dropping a package would save, roughly.
``rss_mb_before`` is the bare interpreter, ``rss_mb_after`` after the imports. The agent's running
figure (with the emulated radio and its traffic) is ``bench.edge_agent``'s ``rss_mb``.

Run: ``.venv/bin/python -m bench.edge_imports``
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description="resident memory of the edge agent's imports")
    ap.add_argument("--modules", default="vigil_cli.main,edge_agent.run", help="comma-separated, imported in order")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    original = builtins.__import__
    rows: list[tuple[float, int, str]] = []
    depth = 0
    children = [0.0]  # per open import: the inclusive growth of the imports it made
    own: dict[str, float] = {}  # top-level package -> growth while its own modules ran

    def hook(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> Any:
        nonlocal depth
        if level != 0 or name in sys.modules:
            return original(name, globals, locals, fromlist, level)
        before = rss_mb()
        depth += 1
        children.append(0.0)
        try:
            return original(name, globals, locals, fromlist, level)
        finally:
            depth -= 1
            grown = rss_mb() - before
            rows.append((grown, depth, name))
            package = name.partition(".")[0]
            own[package] = own.get(package, 0.0) + grown - children.pop()
            children[-1] += grown

    start = rss_mb()
    builtins.__import__ = hook
    try:
        for name in args.modules.split(","):
            importlib.import_module(name)
    finally:
        builtins.__import__ = original
    end = rss_mb()
    rows.sort(reverse=True)
    print(
        json.dumps(
            {
                "rss_mb_before": round(start, 1),
                "rss_mb_after": round(end, 1),
                "loaded_modules": len(sys.modules),
                "packages": {p: round(mb, 2) for p, mb in sorted(own.items(), key=lambda kv: -kv[1])[: args.top]},
                "modules": [{"module": n, "mb": round(mb, 2), "depth": d} for mb, d, n in rows[: args.top]],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
