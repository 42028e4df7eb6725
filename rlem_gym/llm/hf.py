"""HuggingFace transformers backend: any model id or local path (GGUF included), with KV-prefix reuse.

An agent's prompts share a long, rarely changing preamble (instructions + exemplars) and differ
only in the last few hundred tokens. :class:`HFBackend` keeps the KV cache of the previous call
and, on the next call, crops it to the longest common token prefix with the new prompt, so only
the new suffix is prefilled. ``Completion.cached_tokens`` says how many prompt tokens were reused.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rlem_gym.llm import dequant_cache
from rlem_gym.llm.base import (
    LLM,
    Completion,
    LLMError,
    chat_messages,
    check_generate_args,
    common_prefix_len,
    find_stop,
    timed,
)
from rlem_gym.llm.constraint import ActionConstraint, check_constraint

#: weights shared by every HFBackend of this process, keyed by what was loaded
_WEIGHTS: dict[tuple[str, str | None, str, str], "_Loaded"] = {}
_WEIGHTS_LOCK = threading.Lock()


@dataclass
class _Loaded:
    """A loaded (model, tokenizer) pair and the facts derived from it once."""

    model: Any
    tokenizer: Any
    device: str
    eos_ids: frozenset[int]
    context_length: int
    is_chat: bool
    cache_arg: str
    """The forward() keyword that takes the KV cache: ``cache`` (transformers >= 5.x) or ``past_key_values``."""
    origin: str = "pretrained"
    """Where the weights came from: ``gguf`` (dequantised now), ``cache`` (:mod:`dequant_cache`) or ``pretrained``."""
    vocab: Any = None
    """The :class:`VocabIndex` for constrained decoding, built on first use."""

    def vocab_index(self) -> Any:
        """The tokenizer's :class:`rlem_gym.llm.vocab_index.VocabIndex` (built once, then shared)."""
        if self.vocab is None:
            from rlem_gym.llm.vocab_index import VocabIndex

            self.vocab = VocabIndex.from_tokenizer(self.tokenizer, special_ids=sorted(self.eos_ids))
        return self.vocab


def cache_argument(model: Any) -> str:
    """The name under which ``model.forward`` takes the KV cache in this transformers version.

    transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40);
    4.x only knows ``past_key_values``. Asking the signature keeps our calls free of FutureWarnings.
    """
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def resolve_device(device: str) -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is visible, else ``"cpu"``; check explicit choices."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LLMError(f"device={device!r} was asked for but torch sees no CUDA GPU: use device='cpu' or 'auto'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:n]', got {device!r}")
    return device


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ValueError(f"dtype must be one of 'auto', {', '.join(repr(k) for k in table)}; got {dtype!r}")
    return table[dtype]


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        eos = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _context_length(config: Any, tokenizer: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return 2048


def release_weights() -> int:
    """Forget every loaded model of this process (backends still holding one keep it alive); returns how many."""
    with _WEIGHTS_LOCK:
        n = len(_WEIGHTS)
        _WEIGHTS.clear()
    return n


def _load_dequantised(model: str, gguf_file: str) -> tuple[Any, Any] | None:
    """(model, tokenizer) from the dequantised-weights cache; None without an entry or for a broken one (removed)."""
    entry = dequant_cache.lookup(model, gguf_file)
    if entry is None:
        return None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        return AutoModelForCausalLM.from_pretrained(str(entry), dtype=torch.float32), AutoTokenizer.from_pretrained(
            str(entry)
        )
    except Exception as exc:  # noqa: BLE001 - any unreadable entry (safetensors raises its own type): rebuild it
        warnings.warn(
            f"ignoring the unreadable dequantised-weights cache {entry} ({type(exc).__name__}: {exc}); "
            "loading the GGUF instead",
            RuntimeWarning,
            stacklevel=3,
        )
        dequant_cache.discard(entry)
        return None


def load_weights(model: str, gguf_file: str | None, device: str, dtype: str) -> _Loaded:
    """Load (or fetch from this process's cache) the model and tokenizer; raises LLMError on failure."""
    key = (str(model), gguf_file, device, dtype)
    with _WEIGHTS_LOCK:
        if key in _WEIGHTS:
            return _WEIGHTS[key]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = _resolve_dtype(dtype, device)
        loaded_from_cache = _load_dequantised(str(model), gguf_file) if gguf_file else None
        lm, tokenizer = loaded_from_cache or (None, None)
        origin = "cache" if loaded_from_cache else "gguf" if gguf_file else "pretrained"
        if lm is None:
            kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(model), **kw)
                # GGUF weights are dequantised to fp32 on load; cast afterwards for any other dtype.
                lm = AutoModelForCausalLM.from_pretrained(
                    str(model), dtype=torch.float32 if gguf_file else torch_dtype, **kw
                )
            except (OSError, ValueError) as exc:
                offline = (
                    " (HF_HUB_OFFLINE is set: pass a local directory or pre-download the model)"
                    if os.environ.get("HF_HUB_OFFLINE") == "1"
                    else ""
                )
                raise LLMError(
                    f"could not load HF model {model!r}{' gguf_file=' + gguf_file if gguf_file else ''}: {exc}{offline}"
                ) from exc
            if gguf_file:
                dequant_cache.store(str(model), gguf_file, lm, tokenizer)
        lm = lm.to(device=device, dtype=torch_dtype)
        lm.eval()
        loaded = _Loaded(
            model=lm,
            tokenizer=tokenizer,
            device=device,
            eos_ids=_eos_ids(lm, tokenizer),
            context_length=_context_length(lm.config, tokenizer),
            is_chat=bool(getattr(tokenizer, "chat_template", None)),
            cache_arg=cache_argument(lm),
            origin=origin,
        )
        _WEIGHTS[key] = loaded
        return loaded


class HFBackend(LLM):
    """A local HuggingFace causal LM with KV-cache reuse of the shared prompt prefix.

    Args:
        model: a HF model id or a local directory.
        gguf_file: name of a GGUF file inside ``model`` (weights are dequantised on load;
            the tokenizer embedded in the GGUF is used). The dequantised weights of a local
            GGUF are cached on disk after the first load (:mod:`rlem_gym.llm.dequant_cache`).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:n]"``.
        dtype: ``"auto"`` (fp32 on CPU, bf16 on CUDA), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        chat: apply the tokenizer's chat template (``None`` = when the tokenizer has one).
        system_prompt: system message for chat models (``None`` = the template's default).
        prefix_cache: reuse the KV cache of the longest common token prefix across calls.
        num_threads: torch CPU threads (process-wide; ``None`` leaves torch's default).
        name: display name (default ``hf:<model>``).

    Weights are loaded once per process and shared by every backend built with the same
    (model, gguf_file, device, dtype); each backend keeps its own KV cache.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        gguf_file: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        chat: bool | None = None,
        system_prompt: str | None = None,
        prefix_cache: bool = True,
        num_threads: int | None = None,
        name: str | None = None,
    ) -> None:
        import torch

        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            torch.set_num_threads(num_threads)
        elif torch.get_num_threads() > (os.cpu_count() or 1):
            torch.set_num_threads(os.cpu_count() or 1)
        self.device = resolve_device(device)
        self._w = load_weights(str(model), gguf_file, self.device, dtype)
        self.name = name or f"hf:{model}" + (f"#{gguf_file}" if gguf_file else "")
        self.context_length = self._w.context_length
        self.chat = self._w.is_chat if chat is None else bool(chat)
        if self.chat and not self._w.is_chat:
            raise ValueError(f"chat=True but the tokenizer of {model!r} has no chat template: pass chat=False")
        self.system_prompt = system_prompt
        self.prefix_cache = prefix_cache
        self.supports_constraint = True
        self._cache: Any = None  # transformers DynamicCache of the previous call
        self._cache_ids: list[int] = []  # the token ids whose keys/values are in _cache
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- tokens
    def count_tokens(self, text: str) -> int:
        """Exact number of tokens of ``text`` under the model's tokenizer (no special tokens)."""
        return len(self._w.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, prompt: str, response_prefix: str = "") -> list[int]:
        """The token ids the model sees for ``prompt`` (chat template applied for chat models).

        ``response_prefix`` follows the template's generation prompt (chat) or the prompt (base),
        tokenized together with it, so the reply continues the prefix.
        """
        tok = self._w.tokenizer
        if self.chat:
            messages = chat_messages(prompt, self.system_prompt)
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok(text + response_prefix, add_special_tokens=False)["input_ids"])
        return list(tok(prompt + response_prefix, add_special_tokens=True)["input_ids"])

    def reset_cache(self) -> None:
        """Forget the cached prefix (the next call prefills from scratch)."""
        with self._lock:
            self._drop_cache()

    def _drop_cache(self) -> None:
        """Forget the cached prefix; the caller holds ``_lock`` (or owns the backend, as in ``close``)."""
        self._cache, self._cache_ids = None, []

    # --------------------------------------------------------------- generate
    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 128,
        stop: Sequence[str] | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        response_prefix: str = "",
        constraint: ActionConstraint | None = None,
    ) -> Completion:
        """See :meth:`LLM.generate`; only the tokens after the KV-cached common prefix are prefilled.

        With a ``constraint``, the logits are masked at every step (:mod:`rlem_gym.llm.vocab_index`)
        so that the reply is exactly one allowed action; decoding ends when it is complete.
        """
        stops = check_generate_args(max_tokens, temperature, stop)
        check_constraint(constraint)
        start = timed()
        ids = self.prompt_ids(prompt, response_prefix)
        if len(ids) >= self.context_length:
            raise LLMError(
                f"prompt has {len(ids)} tokens but {self.name} holds {self.context_length}: "
                "shorten it (see rlem_gym.llm.truncate_to_tokens)"
            )
        max_new = min(max_tokens, self.context_length - len(ids))
        with self._lock:
            try:
                text, n_gen, finish, cached = self._run(ids, max_new, stops, temperature, seed, constraint)
            except (RuntimeError, IndexError) as exc:  # torch errors (OOM, bad shapes) surface as LLMError
                self._drop_cache()
                raise LLMError(f"{self.name} failed to generate: {exc}") from exc
        return Completion(
            text=text,
            prompt_tokens=len(ids),
            completion_tokens=n_gen,
            latency_s=timed() - start,
            finish_reason=finish,
            cached_tokens=cached,
        )

    def _prepare_cache(self, ids: list[int]) -> tuple[Any, int]:
        """Crop the previous call's cache to the common prefix with ``ids``; returns (cache, reused)."""
        from transformers import DynamicCache

        cache, keep = self._cache, 0
        if self.prefix_cache and cache is not None:
            # at least one prompt token must be fed to get next-token logits
            keep = min(common_prefix_len(self._cache_ids, ids), len(ids) - 1)
        extra = cache.get_seq_length() - keep if keep > 0 else 0
        if extra > 0:
            try:
                cache.crop(-extra)  # a negative count removes that many trailing tokens
            except (RuntimeError, ValueError):  # sliding-window/recurrent layers past their window: start over
                keep = 0
        if keep <= 0:
            self._drop_cache()
            return DynamicCache(config=self._w.model.config), 0
        self._cache_ids = self._cache_ids[:keep]
        return cache, keep

    def _run(
        self,
        ids: list[int],
        max_new: int,
        stops: list[str],
        temperature: float,
        seed: int | None,
        constraint: ActionConstraint | None = None,
    ) -> tuple[str, int, str, int]:
        import torch

        model, tok, device = self._w.model, self._w.tokenizer, self._w.device
        if max_new == 0:
            return "", 0, "length", 0
        cache, reused = self._prepare_cache(ids)
        generator = None
        if temperature > 0:
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        fed = list(ids[:reused])
        pending = ids[reused:]
        generated: list[int] = []
        text, finish = "", "length"
        longest_stop = max((len(s) for s in stops), default=0)
        vocab = self._w.vocab_index() if constraint is not None else None
        cache_arg = self._w.cache_arg
        with torch.inference_mode():
            while len(generated) < max_new:
                inp = torch.tensor([pending], dtype=torch.long, device=device)
                out = model(input_ids=inp, use_cache=True, logits_to_keep=1, **{cache_arg: cache})
                cache = getattr(out, cache_arg)
                fed.extend(pending)
                logits = out.logits[0, -1].float()
                if vocab is not None:
                    done, logits = self._constrain(logits, vocab, constraint, text)
                    if done:
                        finish = "stop"
                        break
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    nxt = int(torch.multinomial(probs, 1, generator=generator).item())
                else:
                    nxt = int(torch.argmax(logits).item())
                if nxt in self._w.eos_ids:
                    finish = "stop"
                    break
                generated.append(nxt)
                pending = [nxt]
                if vocab is not None:  # the action slot: no stop strings, the constraint ends it
                    text = text + (vocab.texts[nxt] or "")
                    continue
                if stops:
                    prev_len = len(text)
                    text = tok.decode(generated, skip_special_tokens=True)
                    cut = find_stop(text, stops, max(0, prev_len - longest_stop))
                    if cut is not None:
                        text, finish = text[:cut], "stop"
                        break
        if not stops and vocab is None:  # otherwise ``text`` is already the decoded (and possibly cut) reply
            text = tok.decode(generated, skip_special_tokens=True)
        self._cache, self._cache_ids = (cache, fed) if self.prefix_cache else (None, [])
        return text, len(generated), finish, reused

    def _constrain(self, logits: Any, vocab: Any, constraint: ActionConstraint, text: str) -> tuple[bool, Any]:
        """Mask ``logits`` to the tokens the constraint allows after ``text``; ``(True, _)`` when decoding
        must end (the rules are :meth:`VocabIndex.next_mask` and :meth:`VocabIndex.may_end`)."""
        import torch

        allowed = vocab.next_mask(constraint, text)
        if allowed is None:
            return True, logits
        keep = torch.from_numpy(allowed).to(logits.device)
        if keep.shape[0] < logits.shape[0]:  # the model's output layer may be padded past the tokenizer
            keep = torch.cat([keep, keep.new_zeros(logits.shape[0] - keep.shape[0])])
        masked = logits.masked_fill(~keep[: logits.shape[0]], float("-inf"))
        eos_ids = [i for i in self._w.eos_ids if i < logits.shape[0]]
        if eos_ids and vocab.may_end(constraint, text, max(float(logits[i]) for i in eos_ids), float(masked.max())):
            return True, logits
        return False, masked

    def close(self) -> None:
        """Drop this backend's KV cache (the shared weights stay loaded for other backends)."""
        self._drop_cache()
