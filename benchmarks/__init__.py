"""The benchmark runner (installed as ``rlem_gym.benchmarks``): config, plan, episode, runner, results.

Two subpackages sit beside the runner and use it, never the reverse:
:mod:`rlem_gym.benchmarks.perf` (performance scripts and their ``RESULTS.md``) and
:mod:`rlem_gym.benchmarks.study` (the study's tooling: publish, summary, failure analysis, probes).
"""
