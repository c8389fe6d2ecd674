"""The sections of the speed benchmark ``benchmarks/bench_glot.py``, one module per thing measured."""
