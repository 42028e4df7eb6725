"""``bench_quant.requantize``: a shipped GGUF turned into another llama.cpp format, once, and loadable."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install rlem-gym[llamacpp])")
    from rlem_gym.models import smollm2_gguf_path

    return smollm2_gguf_path()


def test_requantize_writes_a_loadable_file_once(shipped, tmp_path):
    from rlem_gym.benchmarks.perf.bench_quant import requantize
    from rlem_gym.llm import make_llm

    out = requantize(shipped, "Q8_0", tmp_path)
    assert out.parent == tmp_path and out.suffix == ".gguf" and "q8_0" in out.name
    # 8 bits a weight against the shipped Q4_1's ~4.5: a bigger file
    assert out.stat().st_size > 1.3 * shipped.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left
    mtime = out.stat().st_mtime_ns
    assert requantize(shipped, "q8_0", tmp_path) == out and out.stat().st_mtime_ns == mtime  # made once
    llm = make_llm(f"gguf:{out}")
    try:
        reply = llm.generate("Say hello.", max_tokens=4)
        assert reply.completion_tokens > 0
    finally:
        llm.close()


def test_unknown_format_is_refused_with_the_known_ones(shipped, tmp_path):
    from rlem_gym.benchmarks.perf.bench_quant import requantize

    with pytest.raises(ValueError, match="unknown llama.cpp format 'Q9_9'.*Q8_0"):
        requantize(shipped, "Q9_9", tmp_path)
    assert not any(tmp_path.iterdir())
