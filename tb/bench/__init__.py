"""Benchmarks (``make bench``): each module here with a ``main(argv)`` writes
``build/bench/<name>.json``."""
