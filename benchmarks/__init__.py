"""Benchmark runner, presets, plots and performance scripts (installed as ``rlem_gym.benchmarks``)."""
