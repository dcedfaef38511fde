"""Run every benchmark: ``python -m bench`` (figures go into BENCHMARKS.md by hand, with the machine and date)."""

import platform

import numpy
import scipy

from . import bench_bounds, bench_report, bench_sequential

print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, numpy {numpy.__version__}, scipy {scipy.__version__}")
bench_bounds.main([])
print()
bench_sequential.main([])
print()
bench_report.main()
