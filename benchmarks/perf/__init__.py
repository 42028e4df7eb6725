"""Performance scripts: envs, memory, LLM backends, model load, agent step cost, decoding, replay.

Each is run as ``python -m rlem_gym.benchmarks.perf.<script>``; their measured numbers, each with
its command, are in ``RESULTS.md`` beside them. :mod:`.measure` holds the shared helpers.
"""
