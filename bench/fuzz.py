"""Fuzz every parser for a while and print JSON (catalogue 23 and 24); not run in CI.

    python -m bench.fuzz --minutes 10                  # every target, 10 minutes each
    python -m bench.fuzz --minutes 1 --targets gatt,body

Targets are in :mod:`bench.fuzz_targets`. Two engines share each target's budget:

- **hypothesis** (always): rounds of generated inputs (random bytes, mutations and splices of the
  seeds, CBOR documents of any shape, nested to the limit), each failing round shrunk to a minimal
  example; rounds go on with new seeds until the time is up;
- **atheris** (coverage-guided libFuzzer, when ``pip install atheris`` worked): a child process per
  target runs it with the seeds as corpus for its half of the budget, restarted after a crash.

Per target it prints examples run, findings (exception type, where it was raised, the minimal
example where one exists) and the process's resident memory (current and peak) before and after:
what catalogue 24's "bounded memory" is judged by.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["main", "run_hypothesis"]

_ROOT = Path(__file__).resolve().parent.parent  # the checkout: the atheris child imports bench from it


def _rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process (VmRSS, VmHWM), MiB."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss" if key == "VmRSS" else "peak"] = round(int(value.split()[0]) / 1024, 1)
    return out


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/site-packages/" not in f.filename and "hypothesis" not in f.filename]
    frame = (ours or frames or [None])[-1]
    return "?" if frame is None else f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def run_hypothesis(name: str, seconds: float, *, seed: int = 0, round_examples: int = 500) -> dict[str, Any]:
    """Fuzz target ``name`` with hypothesis for ``seconds``; returns examples run and findings."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    from bench.fuzz_inputs import inputs
    from bench.fuzz_targets import TARGETS

    target = TARGETS[name]
    strategy = inputs(target)
    examples, rounds = 0, 0
    findings: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + seconds

    def one(data: bytes) -> None:
        nonlocal examples
        examples += 1
        target.check(data)

    before = _rss_mb()
    while rounds == 0 or time.monotonic() < deadline:
        test = settings(
            max_examples=round_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate, Phase.shrink],
            report_multiple_bugs=False,
        )(given(strategy)(one))
        try:
            with_seed(seed * 1_000_003 + rounds)(test)()
        except Exception as exc:  # noqa: BLE001 - every escape is a finding, recorded
            key = f"{type(exc).__name__} at {_where(exc)}"
            entry = findings.setdefault(key, {"type": type(exc).__name__, "where": _where(exc), "count": 0})
            entry["count"] += 1
            entry.setdefault("example", " ".join(getattr(exc, "__notes__", []))[:600])
        rounds += 1
    return {
        "engine": "hypothesis",
        "seconds": round(seconds, 1),
        "rounds": rounds,
        "examples": examples,
        "findings": list(findings.values()),
        "memory_mb": {"before": before, "after": _rss_mb()},
    }


def _atheris_available() -> bool:
    try:
        import atheris  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris(name: str, seconds: float) -> dict[str, Any]:
    """Run target ``name`` under atheris in child processes for ``seconds``, restarting after a crash."""
    from bench.fuzz_targets import TARGETS

    work = Path(tempfile.mkdtemp(prefix=f"vigil-fuzz-{name}-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(TARGETS[name].seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    deadline, runs, crashes, starts = time.monotonic() + seconds, 0, [], 0
    while (left := deadline - time.monotonic()) > 5:
        starts += 1
        argv = [sys.executable, "-m", "bench.fuzz_atheris", name, f"-max_total_time={int(left)}", "-rss_limit_mb=2048"]
        argv += [f"-artifact_prefix={work}/", "-print_final_stats=1", str(corpus)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False, cwd=work, env=env)
        for line in proc.stderr.splitlines():
            if line.startswith("stat::number_of_executed_units:"):
                runs += int(line.split(":")[-1])
        if proc.returncode != 0:
            tail = proc.stderr[-1500:]
            crashes.append({"returncode": proc.returncode, "stderr_tail": tail})
            if len(crashes) >= 5:
                break
    return {
        "engine": "atheris",
        "seconds": round(seconds, 1),
        "starts": starts,
        "examples": runs,
        "findings": crashes,
        "artifacts": str(work),
    }


def main(argv: list[str] | None = None) -> None:
    from bench.fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="budget per target (both engines together)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    parser.add_argument("--engine", choices=("auto", "hypothesis", "atheris"), default="auto")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    args = parser.parse_args(argv)
    names = [n for n in args.targets.split(",") if n]
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    atheris = args.engine in ("auto", "atheris") and _atheris_available()
    if args.engine == "atheris" and not atheris:
        parser.error("atheris is not installed (pip install atheris)")
    report: dict[str, Any] = {
        "bench": "fuzz",
        "minutes_per_target": args.minutes,
        "seed": args.seed,
        "engines": (["hypothesis"] if args.engine != "atheris" else []) + (["atheris"] if atheris else []),
        "python": sys.version.split()[0],
        "pid": os.getpid(),
        "targets": {},
    }
    for name in names:
        budget = args.minutes * 60
        results = []
        if args.engine != "atheris":
            results.append(run_hypothesis(name, budget / 2 if atheris else budget, seed=args.seed))
        if atheris:
            results.append(run_atheris(name, budget / 2 if args.engine == "auto" else budget))
        report["targets"][name] = {
            "examples": sum(r["examples"] for r in results),
            "findings": sum(len(r["findings"]) for r in results),
            "runs": results,
        }
        print(json.dumps({"target": name, **report["targets"][name]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
