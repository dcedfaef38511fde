"""Run the benchmarks: ``python -m bench`` runs every one; ``python -m bench --quick`` the fast ones;
``python -m bench NAME ...`` those named. Figures go into BENCHMARKS.md by hand, with the machine and date.

On the project's 2-core CPU machine the quick set takes about a minute and the full set about an hour
(most of it the 10,000 soundness requirements and the n = 100,000 decisions). ``llava7b`` needs a CUDA GPU
and is skipped, with a message, without one.
"""

import argparse
import importlib
import platform
import time

import numpy
import scipy

QUICK = ["bounds", "sequential", "report"]
SLOW = ["efficiency", "regression", "engine", "families", "served", "decisions", "soundness", "attacks", "cases", "overhead", "prefix",
        "llava7b"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"any of {QUICK + SLOW} (default: all)")
    ap.add_argument("--quick", action="store_true", help=f"only {QUICK}")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.names) - set(QUICK + SLOW))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {QUICK + SLOW}")
    names = args.names or (QUICK if args.quick else QUICK + SLOW)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
          f"numpy {numpy.__version__}, scipy {scipy.__version__}; benchmarks: {', '.join(names)}")
    for name in names:
        print(f"\n== bench_{name} ==", flush=True)
        t0 = time.perf_counter()
        module = importlib.import_module(f"bench.bench_{name}")
        module.main([])
        print(f"== bench_{name}: {time.perf_counter() - t0:.0f} s ==", flush=True)


main()
