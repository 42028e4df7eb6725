"""llama.cpp backend for GGUF files, through the optional ``llama-cpp-python`` extra.

Chat models: the GGUF's own chat template is rendered to text here (llama-cpp-python's Jinja2
formatter, as its chat API does) and run as a raw completion, so a ``response_prefix`` can be
placed at the start of the assistant turn. llama.cpp keeps the token sequence behind its KV cache and, on the next call, evaluates only the
tokens after the longest common prefix, so an agent's fixed preamble is prefilled once.
``llama_cpp`` is imported only when a backend is built.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rlem_gym.llm.base import (
    LLM,
    Completion,
    LLMError,
    Scores,
    chat_messages,
    check_generate_args,
    common_prefix_len,
    find_stop,
    finish_reason,
    timed,
)
from rlem_gym.llm.constraint import ActionConstraint, check_constraint
from rlem_gym.llm.prefix_cache import PrefixCache, common_prefix

INSTALL_HINT = "pip install rlem-gym[llamacpp]"


def import_llama_cpp() -> Any:
    """Import ``llama_cpp`` or raise an ImportError that says which extra to install."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(f"the llama.cpp backend needs llama-cpp-python: run `{INSTALL_HINT}`") from exc
    return llama_cpp


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def prompt_lookup(history: Sequence[int], n: int, max_ngram: int = 3) -> list[int]:
    """Up to ``n`` tokens guessed to follow ``history``: what followed the latest earlier occurrence
    of its last ``max_ngram`` tokens (or fewer, down to one, when the longer n-gram never occurred)."""
    if n <= 0 or len(history) < 2:
        return []
    seq = np.asarray(history, dtype=np.int64)
    for size in range(min(max_ngram, len(seq) - 1), 0, -1):
        tail = seq[-size:]
        windows = np.lib.stride_tricks.sliding_window_view(seq[:-1], size)
        hits = np.flatnonzero((windows == tail).all(axis=1))
        if len(hits):
            start = int(hits[-1]) + size
            return [int(t) for t in seq[start : start + n]]
    return []


def gguf_context_length(path: str | Path) -> int | None:
    """The training context length of a GGUF model (None when the file does not say).

    Read by llama.cpp itself from a memory-mapped load (about 0.4 s for Qwen2.5-0.5B), not by the
    ``gguf`` package's reader, which parses the whole vocabulary first (about 10 s on 2 cores).
    """
    llama_cpp = import_llama_cpp()
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.use_mmap = True
    params.n_gpu_layers = 0
    model = LlamaModel(path_model=str(path), params=params, verbose=False)
    try:
        n = int(model.n_ctx_train())
    finally:
        model.close()
    return n if n > 0 else None


class LlamaCppBackend(LLM):
    """A GGUF model run by llama.cpp on the CPU (or GPU when llama-cpp-python was built for one).

    Args:
        model_path: path of the ``.gguf`` file.
        n_ctx: context window to allocate (``None`` = the model's training context, capped at 8192).
        n_threads: CPU threads (``None`` = all cores).
        n_gpu_layers: layers to offload to a GPU (0 = CPU only, -1 = all).
        chat: apply the GGUF's chat template (``None`` = when the file has one).
        system_prompt: system message for chat models (``None`` = the template's default).
        name: display name (default ``gguf:<path>``).
        constraint_engine: how ``generate(..., constraint=...)`` is enforced: ``"mask"`` (a logits
            processor masks the tokens that would leave the allowed actions, the same
            :class:`~rlem_gym.llm.vocab_index.VocabIndex` the HF backend uses) or ``"grammar"``
            (llama.cpp's GBNF sampler). Both give the same greedy action (tested) at the same
            speed (measured: 3.66 s vs 3.57 s for an 11-token action, benchmarks/RESULTS.md);
            ``"mask"`` is the default so that llama.cpp and HF enforce a constraint with one piece of code.
        prefix_cache_mb: RAM for KV snapshots of earlier calls (:class:`~rlem_gym.llm.prefix_cache.PrefixCache`;
            0 = none; about 12 KB a token for Qwen2.5-0.5B). A call then starts from the earlier call
            that shares the longest prefix with its prompt, not only from the call just before it:
            interleaved agents and prompts that repeat an earlier call's exemplars stop prefilling
            what was evaluated before. Outputs are bit-identical to those without it (see
            :meth:`_start_from_longest_prefix`).
        draft_tokens: prompt-lookup drafting for greedy replies (0 = off): after each token, up to
            this many following tokens are guessed by finding the reply's last few tokens earlier in
            the prompt or reply (:func:`prompt_lookup`), and checked in one batch with the token;
            the guesses the model would also have chosen are kept. Agents that copy their own
            earlier text (ReAct's thoughts) decode several tokens per weight read. The batch
            computes the kept tokens' logits with other kernels than one-token decoding, so a
            near-tie may resolve the other way (measured in ``benchmarks/perf/RESULTS.md``).
            Sampled replies (temperature > 0) and the ``"grammar"`` engine decode without it.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        chat: bool | None = None,
        system_prompt: str | None = None,
        name: str | None = None,
        constraint_engine: str = "mask",
        prefix_cache_mb: float = 2048,
        draft_tokens: int = 0,
    ) -> None:
        if prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {prefix_cache_mb}")
        if int(draft_tokens) != draft_tokens or draft_tokens < 0:
            raise ValueError(f"draft_tokens must be an integer >= 0, got {draft_tokens}")
        self.draft_tokens = int(draft_tokens)
        #: prompt-lookup guesses checked and kept since the backend was built (``draft_tokens``)
        self.drafts_checked = self.drafts_kept = 0
        llama_cpp = import_llama_cpp()
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path} (pass the path of a .gguf file)")
        threads = n_threads or os.cpu_count() or 1
        try:
            if n_ctx is None:  # the training context, capped so that huge windows don't eat RAM
                n_ctx = min(gguf_context_length(path) or 4096, 8192)
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise LLMError(f"llama.cpp could not load {path}: {exc}") from exc
        template = self._llm.metadata.get("tokenizer.chat_template") or ""
        self.chat = bool(template) if chat is None else bool(chat)
        if self.chat and not template:
            raise ValueError(f"chat=True but {path.name} has no chat template: pass chat=False")
        eos, bos = int(self._llm.token_eos()), int(self._llm.token_bos())
        #: BOS as the vocabulary spells it ("" without one): a prompt that starts with it gets no second BOS
        self._bos_text = self._spell(bos)
        self._formatter: Any = None
        self._template_stops: list[str] = []  # the formatter's stop strings: its eos, the same on every call
        if self.chat:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos_text = self._spell(eos)
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=eos_text,
                bos_token=self._bos_text,
                stop_token_ids=[eos] if eos >= 0 else None,
            )
            self._template_stops = [eos_text] if eos_text else []
        self.system_prompt = system_prompt
        self.context_length = int(self._llm.n_ctx())
        self.name = name or f"gguf:{path}"
        self._lock = threading.Lock()
        self.supports_constraint = True
        self.supports_scoring = True
        if constraint_engine not in ("mask", "grammar"):
            raise ValueError(f"constraint_engine must be 'mask' or 'grammar', got {constraint_engine!r}")
        self.constraint_engine = constraint_engine
        self._vocab: Any = None  # VocabIndex for the "mask" engine, built on first use
        self._grammars: dict[str, Any] = {}  # GBNF text -> compiled LlamaGrammar (pages repeat)
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb else None
        self._previous = np.zeros(0, dtype=np.int64)  # what the last call evaluated, since reset_cache()

    def _grammar(self, constraint: ActionConstraint) -> Any:
        """The compiled llama.cpp grammar of ``constraint`` (cached: an episode revisits the same pages)."""
        text = constraint.gbnf()
        grammar = self._grammars.get(text)
        if grammar is None:
            from llama_cpp import LlamaGrammar

            grammar = LlamaGrammar.from_string(text, verbose=False)
            if len(self._grammars) >= 256:
                self._grammars.clear()
            self._grammars[text] = grammar
        return grammar

    def _mask_processor(self, constraint: ActionConstraint, n_prompt: int) -> tuple[Any, list[BaseException]]:
        """A llama.cpp logits processor that masks every token the constraint forbids after the reply so
        far, and the list where it keeps an exception raised inside it.

        llama.cpp calls the processor from a C callback, where a raised exception is printed and
        then ignored, generation going on: a Ctrl-C or ``kill`` (SIGTERM raises KeyboardInterrupt in
        the CLI) that lands there would be lost. So the processor keeps the exception, lets only the
        end-of-sequence token through to end the reply at once, and :meth:`generate` raises it.
        """
        from llama_cpp import LogitsProcessorList

        from rlem_gym.llm.vocab_index import eos_only

        if self._vocab is None:
            from rlem_gym.llm.vocab_index import VocabIndex

            self._vocab = VocabIndex.from_llama(self._llm)
        vocab, eos = self._vocab, int(self._llm.token_eos())
        raised: list[BaseException] = []

        def process(input_ids: Any, scores: Any) -> Any:
            if not raised:
                try:
                    return vocab.constrain(scores, constraint, vocab.text_of(input_ids[n_prompt:]), eos)
                except BaseException as exc:  # noqa: BLE001 - re-raised by generate()
                    raised.append(exc)
            return eos_only(scores, eos)

        return LogitsProcessorList([process]), raised

    def _spell(self, token_id: int) -> str:
        """A special token's text as the vocabulary spells it ("" for a missing token, id -1)."""
        return self._llm.detokenize([token_id], special=True).decode("utf-8", "replace") if token_id >= 0 else ""

    def prompt_text(self, prompt: str, response_prefix: str = "") -> tuple[str, list[str]]:
        """The raw text the model completes (chat template applied for chat models), and the template's stop strings."""
        if self._formatter is None:
            return prompt + response_prefix, []
        formatted = self._formatter(messages=chat_messages(prompt, self.system_prompt))
        return formatted.prompt + response_prefix, list(self._template_stops)

    def count_tokens(self, text: str) -> int:
        """Exact number of tokens of ``text`` under the GGUF's tokenizer (no BOS)."""
        return len(self._tokens_plain(text))

    def _cached_ids(self) -> list[int]:
        n = int(getattr(self._llm, "n_tokens", 0))
        return [int(t) for t in self._llm.input_ids[:n]] if n > 0 else []

    #: a snapshot is restored only when it serves this many more prompt tokens than the live context
    MIN_RESTORE_GAIN = 16
    #: CPU matrix kernels take a batch's tokens in groups of this many (the rest one by one, whose
    #: results differ in the last bits), so the prefill after a restored prefix starts at a whole
    #: number of groups past where the call would start without the prefix cache
    PREFIX_ALIGN = 4

    def _start_from_longest_prefix(self, ids: list[int]) -> None:
        """Start the call from the stored snapshot sharing the longest prefix with ``ids``, when that beats the live context.

        The call's outputs stay bit-identical to a backend without the prefix cache: a token's KV
        depends on whether its batch computed it in a group of :data:`PREFIX_ALIGN` or alone, so
        the tokens after the restored prefix are evaluated from a point that keeps the grouping of
        the call without the cache, which would have started after the tokens it shares with the
        previous call since :meth:`reset_cache` (``self._previous``).
        """
        cache = self.prefix_cache
        if cache is None or not ids:
            return
        llm = self._llm
        query = np.asarray(ids, dtype=np.int64)
        last = len(ids) - 1  # the last prompt token is always evaluated, for its logits
        base = min(common_prefix(self._previous, query), last)
        live = min(common_prefix(np.asarray(llm.input_ids[: llm.n_tokens], dtype=np.int64), query), last)
        n_snap, snap = cache.longest(query)
        best = max(live, min(n_snap, last))
        start = base + self.PREFIX_ALIGN * ((best - base) // self.PREFIX_ALIGN) if best > base else base
        if start > live:  # past what the live context holds: from a snapshot, when one serves enough of it
            if snap is not None and n_snap >= start and start - live >= self.MIN_RESTORE_GAIN:
                import ctypes

                llama_cpp = import_llama_cpp()
                buf = (ctypes.c_uint8 * len(snap.data)).from_buffer_copy(snap.data)
                if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buf, len(snap.data), 0) != len(snap.data):
                    raise LLMError(f"{self.name}: could not restore a KV snapshot of {len(snap.tokens)} tokens")
                llm.input_ids[: len(snap.tokens)] = snap.tokens
                cache.hits += 1
                cache.hit_tokens += start - live
            else:
                start = base + self.PREFIX_ALIGN * ((live - base) // self.PREFIX_ALIGN) if live > base else base
        llm.n_tokens = start
        llm._requires_eval = True

    def _snapshot(self) -> None:
        """Keep the evaluated sequence (prompt and reply) in the prefix cache, unless a snapshot holds it already."""
        llm = self._llm
        n = int(llm.n_tokens)
        if self.prefix_cache is None or n == 0:
            return
        tokens = np.asarray(llm.input_ids[:n], dtype=np.int64)
        if self.prefix_cache.covers(tokens):
            return
        import ctypes

        llama_cpp = import_llama_cpp()
        size = int(llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0))
        if size <= 0 or size > self.prefix_cache.capacity_bytes:
            return
        buf = (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, buf, size, 0))
        if written > 0:
            self.prefix_cache.put(tokens, ctypes.string_at(buf, written))

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
        """See :meth:`LLM.generate`; runs as a raw completion of the templated text plus the prefix.

        With a ``constraint``, llama.cpp samples under its GBNF grammar (:meth:`ActionConstraint.gbnf`),
        so the reply is exactly one allowed action and ends there.
        """
        stops = check_generate_args(max_tokens, temperature, stop)
        check_constraint(constraint)
        start = timed()
        text, template_stops = self.prompt_text(prompt, response_prefix)
        # tokenized here, not by create_completion, which would put the vocabulary's BOS in front of the
        # BOS a chat template writes itself
        ids = self._tokens(text)
        if max_tokens == 0:
            return Completion("", len(ids), 0, timed() - start, "length")
        # plain sampling (no top-k/top-p/min-p truncation, no repeat penalty) so that settings mean
        # the same as in the HF backend
        sampling: dict[str, Any] = dict(
            max_tokens=max_tokens,
            stop=stops + template_stops,
            temperature=float(temperature),
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            seed=seed if seed is not None else (0 if temperature == 0 else None),
        )
        raised: list[BaseException] = []
        if constraint is not None:
            sampling["stop"] = list(template_stops)
            if self.constraint_engine == "grammar":
                sampling["grammar"] = self._grammar(constraint)
            else:
                sampling["logits_processor"], raised = self._mask_processor(constraint, len(ids))
        drafting = self.draft_tokens > 0 and temperature == 0 and "grammar" not in sampling
        with self._lock:
            self._start_from_longest_prefix(ids)
            before = self._cached_ids()
            try:
                if drafting:
                    out = self._greedy_with_drafts(ids, max_tokens, sampling["stop"], sampling.get("logits_processor"))
                else:
                    out = self._llm.create_completion(prompt=ids, **sampling)
            except ValueError as exc:  # llama-cpp-python reports context overflow this way
                raise LLMError(f"{self.name}: {exc} (shorten the prompt; see rlem_gym.llm.truncate_to_tokens)") from exc
            except RuntimeError as exc:
                raise LLMError(f"{self.name} failed to generate: {exc}") from exc
            if raised:  # an exception inside the logits processor (see _mask_processor)
                raise raised[0]
            usage = out.get("usage") or {}
            n_prompt = int(usage.get("prompt_tokens") or 0)
            after = self._cached_ids()
            self._previous = np.asarray(after, dtype=np.int64)
            self._snapshot()
        cached = min(common_prefix_len(before, after[:n_prompt]), max(0, n_prompt - 1))
        return Completion(
            text=out["choices"][0]["text"],
            prompt_tokens=n_prompt,
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_s=timed() - start,
            finish_reason=finish_reason(out["choices"][0].get("finish_reason")),
            cached_tokens=cached,
        )

    def _tokens(self, text: str) -> list[int]:
        """``text`` as the model reads it: the vocabulary's BOS added only when the text has none."""
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def _tokens_plain(self, text: str) -> list[int]:
        """``text``'s own tokens: no BOS, special-token text read as plain text."""
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _eval_prompt(self, ids: Sequence[int]) -> np.ndarray:
        """Evaluate the prompt ``ids`` and return the logits after its last token (float32).

        Without a prefix cache the live context may hold more than the prompt (an earlier prompt
        and reply, the last continuation scored), so evaluation goes on from the part it shares
        with ``ids``, and always evaluates the last token, for its logits.
        """
        llm = self._llm
        live = common_prefix(np.asarray(llm.input_ids[: llm.n_tokens], dtype=np.int64), np.asarray(ids))
        first = min(int(llm.n_tokens), live, len(ids) - 1)
        llm.n_tokens = first
        llm.eval(list(ids[first:]))
        row = import_llama_cpp().llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(int(llm.n_vocab()),)).copy()

    def _eval_logits(self, tokens: Sequence[int], at: int) -> np.ndarray:
        """Evaluate ``tokens`` at position ``at`` (the KV cache after it dropped) and return the
        logits after each of them, one float32 row per token."""
        llm = self._llm
        llama_cpp = import_llama_cpp()
        n_vocab = int(llm.n_vocab())
        rows = []
        llm._ctx.kv_cache_seq_rm(-1, at, -1)
        for i in range(0, len(tokens), llm.n_batch):
            batch = list(tokens[i : i + llm.n_batch])
            llm._batch.set_batch(batch=batch, n_past=at + i, logits_all=True)
            llm._ctx.decode(llm._batch)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm._ctx.ctx), shape=(len(batch) * n_vocab,))
            rows.append(logits.reshape(len(batch), n_vocab).copy())
            llm.input_ids[at + i : at + i + len(batch)] = batch
        llm.n_tokens = at + len(tokens)
        return np.concatenate(rows)

    def _eval_logprobs(self, tokens: Sequence[int], at: int) -> np.ndarray:
        """:meth:`_eval_logits` as log-probabilities."""
        return log_softmax(self._eval_logits(tokens, at))

    def _greedy_with_drafts(
        self, ids: list[int], max_tokens: int, stops: Sequence[str], processor: Any
    ) -> dict[str, Any]:
        """A greedy reply to ``ids`` with prompt-lookup drafts (see ``draft_tokens``), shaped as
        ``create_completion``'s answer (text, finish reason, usage).

        Each round evaluates the chosen token and up to ``draft_tokens`` guesses in one batch; a
        guess is kept while it is the argmax (after ``processor``, the constraint's mask) of the
        logits before it, and the KV cells of the first rejected guess and after are dropped.
        Stop strings, end of sequence and ``max_tokens`` end the reply as in ``create_completion``.
        """
        llm = self._llm
        eos = int(llm.token_eos())
        last = self._eval_prompt(ids)
        history = list(ids)
        reply: list[int] = []

        def choose(row: np.ndarray) -> int:
            if processor is not None:
                for fn in processor:
                    row = fn(np.asarray(history, dtype=np.intc), row)
            return int(np.argmax(row))

        def ends(token: int) -> tuple[str, str] | None:
            """Take ``token`` into the reply; the (text, finish reason) when the reply is over."""
            if token == eos:
                return self._text(reply), "stop"
            reply.append(token)
            history.append(token)
            text = self._text(reply)
            cut = find_stop(text, stops)
            if cut is not None:
                return text[:cut], "stop"
            return (text, "length") if len(reply) >= max_tokens else None

        token = choose(last)
        while (done := ends(token)) is None:
            at = int(llm.n_tokens)
            guesses = prompt_lookup(history, min(self.draft_tokens, max_tokens - len(reply)))
            rows = self._eval_logits([history[-1], *guesses], at)
            kept = 0
            token = choose(rows[0])
            while kept < len(guesses) and token == guesses[kept]:
                kept += 1
                done = ends(token)
                if done is not None:
                    break
                token = choose(rows[kept])
            self.drafts_checked += len(guesses)
            self.drafts_kept += kept
            if done is not None:
                break
            if kept < len(guesses):  # the rejected guesses' cells go
                llm._ctx.kv_cache_seq_rm(-1, at + 1 + kept, -1)
                llm.n_tokens = at + 1 + kept
        text, reason = done
        return {
            "choices": [{"text": text, "finish_reason": reason}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": len(reply)},
        }

    def _text(self, tokens: Sequence[int]) -> str:
        return self._llm.detokenize(list(tokens)).decode("utf-8", "ignore")

    def score(self, prompt: str, continuations: Sequence[str], *, response_prefix: str = "") -> Scores:
        """See :meth:`LLM.score`: the prompt is evaluated once (from the prefix cache when it can),
        then the continuations in sorted token order, so that a shared start is evaluated once.

        A continuation is tokenized as part of the whole text (prompt, prefix, continuation), as
        generation would meet it; where that would change the prompt's own last tokens, it is
        tokenized alone.
        """
        start = timed()
        if not continuations:
            raise ValueError("score() needs at least one continuation")
        text, _ = self.prompt_text(prompt, response_prefix)
        ids = self._tokens(text)
        seqs: list[tuple[int, ...]] = []
        for c in continuations:
            whole = self._tokens(text + c)
            seq = whole[len(ids) :] if whole[: len(ids)] == ids else self._tokens_plain(c)
            if not seq:
                raise ValueError(f"continuation {c!r} has no tokens")
            seqs.append(tuple(seq))
        logprobs = [0.0] * len(seqs)
        scored = 0
        with self._lock:
            self._start_from_longest_prefix(ids)
            before = self._cached_ids()
            n = len(ids)
            try:
                after_prompt = log_softmax(self._eval_prompt(ids))
                self._previous = np.asarray(ids, dtype=np.int64)
                self._snapshot()
                path: tuple[int, ...] = ()
                rows = [after_prompt]  # rows[j]: log-probabilities after the prompt and path[:j]
                for i in sorted(range(len(seqs)), key=lambda j: seqs[j]):
                    seq = seqs[i]
                    keep = common_prefix_len(path, seq[:-1])
                    path, rows = path[:keep], rows[: keep + 1]
                    todo = seq[keep:-1]
                    if todo:
                        rows.extend(self._eval_logprobs(todo, n + keep))
                        path = path + tuple(todo)
                        scored += len(todo)
                    logprobs[i] = float(sum(rows[j][t] for j, t in enumerate(seq)))
            except RuntimeError as exc:
                raise LLMError(f"{self.name} failed to score: {exc}") from exc
        cached = min(common_prefix_len(before, ids), max(0, n - 1))
        return Scores(tuple(logprobs), n, scored + len(seqs), timed() - start, cached)

    def reset_cache(self) -> None:
        """Forget the evaluated prefix: the next call prefills from scratch, or from the prefix cache's
        snapshots when there is one (``prefix_cache_mb``; :meth:`clear_prefix_cache` drops them)."""
        with self._lock:
            self._llm.reset()
            self._previous = np.zeros(0, dtype=np.int64)

    def clear_prefix_cache(self) -> None:
        """Drop every KV snapshot of the prefix cache (no-op without one)."""
        if self.prefix_cache is not None:
            with self._lock:
                self.prefix_cache.clear()

    def close(self) -> None:
        """Free the llama.cpp model and context (safe to call twice)."""
        llm = getattr(self, "_llm", None)
        if llm is not None and hasattr(llm, "close"):
            llm.close()
