"""Probes the study report (``docs/study/README.md``) cites; their outputs lie in ``docs/study/probes``.

Each is run from a checkout as ``python -m rlem_gym.benchmarks.study.probes.<probe>``.
"""

from pathlib import Path

#: the study's published runs and probe outputs (``docs/study`` of the checkout)
STUDY_DOCS = Path(__file__).resolve().parents[3] / "docs" / "study"
