"""LLM backends behind one interface: llama.cpp GGUF, HF transformers, OpenAI-compatible HTTP.

>>> from rlem_gym.llm import make_llm
>>> llm = make_llm()                        # the best installed zoo model: Qwen2.5-Coder-0.5B on llama.cpp
>>> llm.generate("Say hi.", max_tokens=8).text

None of these modules imports torch, transformers or llama_cpp at import time.
"""

from rlem_gym.llm.base import LLM, Completion, LLMError, truncate_to_tokens
from rlem_gym.llm.factory import SPEC_FORMS, default_llm_spec, make_llm
from rlem_gym.llm.hf import HFBackend
from rlem_gym.llm.llamacpp import LlamaCppBackend
from rlem_gym.llm.openai_http import OpenAICompatBackend

__all__ = [
    "LLM",
    "Completion",
    "LLMError",
    "truncate_to_tokens",
    "make_llm",
    "default_llm_spec",
    "SPEC_FORMS",
    "HFBackend",
    "LlamaCppBackend",
    "OpenAICompatBackend",
]
