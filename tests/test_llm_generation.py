"""Real generations with the shipped SmolLM2-135M-Instruct, through HF transformers and llama.cpp.

Both backends run the same behavioural checks: greedy determinism, stop strings, max_tokens,
seeded sampling, and KV-prefix reuse that changes nothing but the work done.
"""

from __future__ import annotations

import pytest

from rlem_gym.llm import LLM, LLMError, truncate_to_tokens

PREAMBLE = (
    "You are a shopping assistant on a web store. You read the page, then output one action.\n"
    "Valid actions are search[keywords] and click[button]. Think about the goal before acting.\n"
    + "".join(
        f"Example {i}: goal: buy a {c} cotton t-shirt under {10 + i} dollars. Action: search[{c} cotton t-shirt]\n"
        for i, c in enumerate(["red", "blue", "green", "black", "white", "navy", "grey", "pink", "teal", "gold"])
    )
)


@pytest.fixture(params=["hf_llm", "gguf_llm"])
def llm(request) -> LLM:
    """Each real backend in turn (llama.cpp skips when llama-cpp-python is absent)."""
    backend = request.getfixturevalue(request.param)
    backend.reset_cache()
    return backend


def test_greedy_is_deterministic_and_answers(llm):
    prompt = "What is the capital of France? Answer in one word."
    first = llm.generate(prompt, max_tokens=12)
    llm.reset_cache()
    second = llm.generate(prompt, max_tokens=12)
    assert first.text == second.text
    assert "paris" in first.text.lower()
    assert first.finish_reason == "stop"  # the model ends its turn before 12 tokens
    assert 0 < first.completion_tokens < 12
    # the chat template wraps the prompt: more tokens than the raw text
    assert first.prompt_tokens > llm.count_tokens(prompt)
    assert first.latency_s > 0


def test_stop_strings_cut_the_text(llm):
    prompt = "List three colors, one per line, numbered."
    full = llm.generate(prompt, max_tokens=30)
    assert "\n" in full.text and "2." in full.text, full.text  # precondition for the checks below
    line = llm.generate(prompt, max_tokens=30, stop=["\n"])
    assert line.text == full.text.split("\n")[0]
    assert line.finish_reason == "stop"
    assert line.completion_tokens < full.completion_tokens
    two = llm.generate(prompt, max_tokens=30, stop=["NOT-THERE", "2."])
    assert two.text == full.text[: full.text.index("2.")]
    assert "2." not in two.text


def test_max_tokens_gives_length(llm):
    out = llm.generate("Write a long essay about the history of the ocean.", max_tokens=5)
    assert out.completion_tokens == 5
    assert out.finish_reason == "length"
    assert out.text.strip()
    none = llm.generate("Write a long essay about the ocean.", max_tokens=0)
    assert (none.text, none.completion_tokens, none.finish_reason) == ("", 0, "length")


def test_prefix_reuse_matches_cold_run(llm):
    step_a = PREAMBLE + "Goal: buy a purple wool scarf. Action:"
    step_b = PREAMBLE + "Goal: buy black running shoes size 9. Action:"
    llm.generate(step_a, max_tokens=8)
    warm = llm.generate(step_b, max_tokens=16)
    preamble_tokens = llm.count_tokens(PREAMBLE)
    assert warm.cached_tokens >= preamble_tokens - 2  # the shared preamble was not prefilled again
    assert warm.cached_tokens < warm.prompt_tokens
    llm.reset_cache()
    cold = llm.generate(step_b, max_tokens=16)
    assert cold.cached_tokens == 0
    assert warm.text == cold.text
    assert warm.prompt_tokens == cold.prompt_tokens
    # the very same prompt again: everything but the last token is reused
    again = llm.generate(step_b, max_tokens=16)
    assert again.cached_tokens == again.prompt_tokens - 1
    assert again.text == cold.text


def test_seeded_sampling_reproducible(llm):
    prompt = "Tell me a short story about a cat."
    a = llm.generate(prompt, max_tokens=20, temperature=1.0, seed=7)
    llm.reset_cache()
    b = llm.generate(prompt, max_tokens=20, temperature=1.0, seed=7)
    llm.reset_cache()
    c = llm.generate(prompt, max_tokens=20, temperature=1.0, seed=8)
    assert a.text == b.text
    assert c.text != a.text


def test_overlong_prompt_raises_llmerror(llm):
    with pytest.raises(LLMError, match="token"):
        llm.generate("hello " * (llm.context_length + 100), max_tokens=4)
    # the backend still works afterwards
    assert llm.generate("Say yes.", max_tokens=3).completion_tokens > 0


def test_count_tokens_and_truncation(llm):
    assert llm.context_length == 8192  # SmolLM2's trained window, read from the model
    assert llm.count_tokens("hello world") == 2
    text = " ".join(f"item{i}" for i in range(300))
    cut = truncate_to_tokens(llm, text, 50)
    assert llm.count_tokens(cut) <= 50
    assert text.endswith(cut) and len(cut) > 40
    head = truncate_to_tokens(llm, text, 50, keep="start")
    assert text.startswith(head) and llm.count_tokens(head) <= 50


def test_hf_weights_loaded_once_per_process(hf_llm):
    from rlem_gym.llm import make_llm

    other = make_llm("smollm2")
    assert other._w is hf_llm._w  # same weights, no reload
    assert other._cache is None  # but its own KV cache
    assert other.generate("Say hi.", max_tokens=4).cached_tokens == 0


def test_hf_prefix_cache_off_reports_no_reuse(hf_llm):
    from rlem_gym.llm import make_llm

    plain = make_llm("smollm2", prefix_cache=False)
    prompt = PREAMBLE + "Goal: buy a lamp. Action:"
    first = plain.generate(prompt, max_tokens=8)
    second = plain.generate(prompt, max_tokens=8)
    assert first.cached_tokens == second.cached_tokens == 0
    hf_llm.reset_cache()
    assert hf_llm.generate(prompt, max_tokens=8).text == first.text == second.text


@pytest.mark.slow
def test_hf_loads_offline(tmp_path):
    """SmolLM2 on HF loads and generates with HF_HUB_OFFLINE=1 (no network touched)."""
    import os
    import subprocess
    import sys

    code = "from rlem_gym.llm import make_llm; c = make_llm('smollm2').generate('Say hi.', max_tokens=4); print(c.completion_tokens)"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 0


def test_response_prefix_starts_the_reply(llm):
    """The prefix opens the assistant turn: the model continues it and Completion.text excludes it."""
    prompt = "What is the capital of France? Answer in one word."
    prefix = "The capital of France is"
    plain = llm.generate(prompt, max_tokens=12)
    llm.reset_cache()
    out = llm.generate(prompt, max_tokens=12, response_prefix=prefix)
    assert "capital of france is" not in out.text.lower()  # the prefix is not repeated in the text
    assert out.text.lstrip().lower().startswith("paris"), out.text  # it continues the sentence
    assert out.prompt_tokens > plain.prompt_tokens  # the prefix is part of what the model read
    # the prefix sits after the chat template's generation prompt, not inside the user turn
    if getattr(llm, "chat", False):
        with_cue_in_user = llm.generate(prompt + "\n" + prefix, max_tokens=12)
        assert with_cue_in_user.prompt_tokens > out.prompt_tokens  # template tokens close the user turn after it


def test_response_prefix_keeps_prefix_reuse(llm):
    """Two prompts sharing a preamble, each with the same cue: the preamble's KV cache is reused."""
    cue = "Action: search["
    llm.generate(PREAMBLE + "Goal: buy a purple wool scarf.", max_tokens=6, response_prefix=cue)
    warm = llm.generate(PREAMBLE + "Goal: buy black running shoes size 9.", max_tokens=8, response_prefix=cue)
    assert warm.cached_tokens >= llm.count_tokens(PREAMBLE) - 2
    llm.reset_cache()
    cold = llm.generate(PREAMBLE + "Goal: buy black running shoes size 9.", max_tokens=8, response_prefix=cue)
    assert cold.cached_tokens == 0 and warm.text == cold.text and warm.prompt_tokens == cold.prompt_tokens
    assert "]" in cold.text and not cold.text.lstrip().startswith("search["), cold.text  # it completes the keywords
    again = llm.generate(PREAMBLE + "Goal: buy black running shoes size 9.", max_tokens=8, response_prefix=cue)
    assert again.cached_tokens == again.prompt_tokens - 1 and again.text == cold.text


def test_gguf_template_bos_is_not_doubled(gguf_llm, monkeypatch):
    """A vocabulary that asks for BOS and a chat template that writes it: the prompt gets one BOS, not two.

    SmolLM2's template opens with ``<|im_start|>``, its BOS token; forcing the GGUF's
    ``add_bos_token`` on must change nothing for chat prompts, and add the BOS to raw ones.
    """
    import functools

    import llama_cpp

    from rlem_gym.llm import make_llm

    overrides = {"tokenizer.ggml.add_bos_token": True}
    monkeypatch.setattr(llama_cpp, "Llama", functools.partial(llama_cpp.Llama, kv_overrides=overrides))
    prompt = "What is the capital of France? Answer in one word."
    gguf_llm.reset_cache()
    ref = gguf_llm.generate(prompt, max_tokens=8)
    forced = make_llm("smollm2-gguf", n_ctx=512)
    try:
        assert forced._llm._model.add_bos_token()  # precondition: the override took effect
        out = forced.generate(prompt, max_tokens=8)
        assert (out.prompt_tokens, out.text) == (ref.prompt_tokens, ref.text)
        assert forced.generate(prompt, max_tokens=0).prompt_tokens == ref.prompt_tokens
    finally:
        forced.close()
    raw = make_llm("smollm2-gguf", n_ctx=512, chat=False)
    try:
        out = raw.generate("The capital of France is", max_tokens=2)
        assert out.prompt_tokens == raw.count_tokens("The capital of France is") + 1  # the vocabulary's BOS
    finally:
        raw.close()


def test_constrained_greedy_output_warm_equals_cold(llm):
    """Every optimisation on (KV prefix reuse, constrained decoding's token mask) gives the cold run's greedy output."""
    from rlem_gym.llm.constraint import ActionConstraint

    constraint = ActionConstraint(
        ("click[black running shoes]", "click[purple wool scarf]", "click[back to search]"),
        (("search[", "]"),),
        forbid="[",
    )
    step_a = PREAMBLE + "Goal: buy a purple wool scarf. Action:"
    step_b = PREAMBLE + "Goal: buy black running shoes size 9. Action:"
    llm.generate(step_a, max_tokens=8)
    warm = llm.generate(step_b, max_tokens=32, constraint=constraint)
    assert warm.cached_tokens > 0
    llm.reset_cache()
    cold = llm.generate(step_b, max_tokens=32, constraint=constraint)
    assert cold.cached_tokens == 0
    assert warm.text == cold.text and constraint.matches(cold.text)


def test_hf_generate_warns_nothing(hf_llm):
    """transformers 5.x renamed forward()'s past_key_values to cache: our calls must raise no FutureWarning."""
    import warnings

    hf_llm.reset_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, FutureWarning included, fails the test
        hf_llm.generate(PREAMBLE + "Goal: buy a scarf. Action:", max_tokens=4)
        hf_llm.generate(PREAMBLE + "Goal: buy a hat. Action:", max_tokens=4)  # the cached-prefix path too


def test_gguf_context_length_reads_the_files_metadata(gguf_llm):
    """llama.cpp's own reading of the training context agrees with the gguf package's full parse."""
    from gguf import GGUFReader

    from rlem_gym.llm.llamacpp import gguf_context_length

    path = gguf_llm._llm.model_path
    reader = GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    assert gguf_context_length(path) == int(reader.fields[f"{arch}.context_length"].contents())
    assert gguf_llm.context_length == min(gguf_context_length(path), 8192)
