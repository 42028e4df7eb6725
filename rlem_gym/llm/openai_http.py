"""OpenAI-compatible HTTP backend (vLLM, the llama.cpp server, Ollama, hosted APIs) on the stdlib only.

No SDK: one JSON POST per call over ``http.client``. Each attempt has a real deadline (connect,
send and every read are bounded by what is left of ``timeout``); connection errors, timeouts,
HTTP 429 and 5xx are retried a bounded number of times with exponential backoff; anything else,
or running out of retries, raises :class:`~rlem_gym.llm.base.LLMError`. A failure is never turned
into a made-up completion.

**Prefill.** The agents end each prompt with an answer cue (``Encouraged:``, ``Action:``) that
the reply must continue (``response_prefix``). The local backends put it at the start of the
assistant turn. The standard chat API has no field for that, and a cue sent as part of the user
message is lost: small models then continue the prompt's own pattern instead of answering
(21/21 fallbacks per agent in the served-models check). So the backend finds a way to prefill on each server,
chosen by ``prefill`` (spec option ``?prefill=``):

========================  ================================================  =============================
``prefill``               what is sent                                      servers
========================  ================================================  =============================
``completions``           the chat template rendered here (from a .gguf,    any server with /completions
                          a HF tokenizer dir, or llama-server's /props),    (llama-cpp-python, llama-server,
                          prompt + cue to ``/v1/completions``               vLLM, Ollama)
``continue``              a trailing assistant message holding the cue,     vLLM, SGLang
                          ``continue_final_message: true``,
                          ``add_generation_prompt: false``
``assistant``             a trailing assistant message holding the cue;     llama-server (b5000+), Ollama
                          the server continues it by itself
``guided``                the cue forced by the server's guided decoding    llama-cpp-python's server
                          (a GBNF ``grammar``, or a regex on vLLM):         (``grammar``) when the model
                          the reply must start with the cue, the rest is    has an alias (else its file's
                          free; the cue is cut from the reply. The cue is   template is used, above)
                          forced as the tokens the server's tokenizer
                          gives it (``<[id]>``), where the server can
                          tokenize: spelt as characters, greedy decoding
                          may split it oddly and a small model then
                          writes nonsense
``none``                  the cue appended to the user message (no          hosted APIs
                          prefill; warned once, recorded)
========================  ================================================  =============================

``prefill="auto"`` (the default) picks, at the first call: ``completions`` when ``template`` is
given; else ``assistant`` or ``continue`` when a probe shows the server continues a trailing
assistant message (three 1-token requests: with a prefill the prompt grows by the cue's tokens
only; without, also by an end-of-turn and a new assistant header); else ``completions`` with the
template from llama-server's ``/props``, or from the served model's file when the model name is a
local ``.gguf`` path (llama-cpp-python's server without ``--model_alias``); else ``guided`` when
the server honours a grammar or regex; else ``none``, with a warning. ``capabilities`` says what
was chosen (the benchmark runner writes it to config.json as ``llm_capabilities``).

**Sampling.** On a server found to be llama.cpp's (it honours a GBNF grammar), each request also
carries ``LLAMA_CPP_PLAIN_SAMPLING`` (no repeat penalty, no top-k / min-p cut), as the local
backends decode; ``extra_body`` overrides it. Recorded as ``capabilities["sampling"]``.

**Constrained action decoding.** ``generate(..., constraint=ActionConstraint)`` returns exactly
one allowed action, through the server's guided decoding (``guided``, spec option ``?guided=``):
``grammar`` (llama.cpp: ``"grammar": <GBNF>``), ``regex`` (vLLM >= 0.10:
``"structured_outputs": {"regex": ...}``), ``guided_regex`` (older vLLM: ``"guided_regex": ...``)
or ``none``; ``auto`` probes them in that order (a request that must answer ``q7z``). Where the
server cannot constrain, the call decodes freely (warned once, recorded in ``capabilities``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import threading
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rlem_gym.llm.base import (
    LLM,
    Completion,
    LLMError,
    chat_messages,
    check_generate_args,
    find_stop,
    finish_reason,
    timed,
)
from rlem_gym.llm.chat_template import ChatTemplate, load_chat_template

if TYPE_CHECKING:
    from rlem_gym.llm.constraint import ActionConstraint

#: HTTP statuses worth retrying: rate limiting and server-side failures
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: ways to prefill the reply (see the module docstring); "auto" detects one
PREFILL_MODES = ("auto", "completions", "continue", "assistant", "guided", "none")
#: ways to constrain decoding; "auto" probes grammar, regex, guided_regex in turn
GUIDED_MODES = ("auto", "grammar", "regex", "guided_regex", "none")
#: plain sampling on llama.cpp servers (the local backends' settings); their own defaults are a
#: repeat penalty of 1.1 over the last 64 tokens and top-k 40 / min-p 0.05, and the penalty alone
#: doubled the static agent's fallbacks (it pushes the model off the ids and options it must copy)
LLAMA_CPP_PLAIN_SAMPLING = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0, "top_p": 1.0}
#: the probes' user message and the text a guided-decoding probe forces
_PROBE_PROMPT = "Say OK."
_PROBE_FORCED = "q7z"


class _Retryable(Exception):
    """One attempt failed in a way that a later attempt may not."""


def gbnf_literal(text: str) -> str:
    """A GBNF string literal for ``text`` (JSON's escapes are a subset GBNF reads)."""
    return json.dumps(text, ensure_ascii=False)


def _meets(stop: str, cue: str) -> bool:
    """Whether ``stop`` could match inside ``cue`` or across its end."""
    return bool(cue) and (stop in cue or any(cue.endswith(stop[:k]) for k in range(1, len(stop))))


def prefixed_grammar(
    prefix: str, constraint: "ActionConstraint | None", prefix_ids: Sequence[int] | None = None
) -> str:
    """A GBNF grammar: ``prefix``, then one action of ``constraint`` (or any text when None).

    With ``prefix_ids`` (the prefix's tokens), the prefix is forced as exactly those tokens (GBNF
    token references ``<[id]>``), not as characters: a grammar that only spells the text lets greedy
    decoding pick an odd split of it (``E`` + ``n`` + ... instead of ``Enc`` + ``ourag`` + ``ed``),
    after which small models write nonsense.
    """
    head = " ".join(f"<[{int(t)}]>" for t in prefix_ids) if prefix_ids else gbnf_literal(prefix)
    if constraint is None:
        return f"root ::= {head} rest\nrest ::= [^\\x00]*\n"
    grammar = constraint.gbnf()
    if not prefix:
        return grammar
    renamed = re.sub(r"^root(\s*::=)", r"prefilled-action\1", grammar, count=1, flags=re.M)
    return f"root ::= {head} prefilled-action\n{renamed}"


def prefixed_regex(prefix: str, constraint: "ActionConstraint | None") -> str:
    """A regex (no anchors): ``prefix``, then one action of ``constraint`` (or any text when None)."""
    return re.escape(prefix) + (constraint.regex() if constraint is not None else r"[\s\S]*")


class _ClientError(LLMError):
    """The server answered 4xx: the request itself was refused (not retried)."""


class OpenAICompatBackend(LLM):
    """A model served behind an OpenAI-compatible ``/v1`` API.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name sent as ``"model"``.
        api_key: bearer token; ``None`` reads the environment variable ``api_key_env``
            (no header is sent when neither is set, as local servers need none).
        api_key_env: environment variable holding the key (default ``OPENAI_API_KEY``).
        endpoint: ``"chat"`` (a chat model; how its reply is prefilled is ``prefill``'s business)
            or ``"completions"`` (``/completions`` with the raw prompt + ``response_prefix``, for
            base models: that is already a true prefill).
        prefill: how ``response_prefix`` starts the assistant turn on the chat path: one of
            :data:`PREFILL_MODES` (see the module docstring); ``"auto"`` detects it at the first call.
        template: the chat template for ``prefill="completions"``: a ``.gguf`` file, a HF tokenizer
            directory or a Jinja file (implies ``prefill="completions"`` under ``"auto"``).
        guided: how a ``constraint`` (and the ``guided`` prefill) reaches the server: one of
            :data:`GUIDED_MODES`; ``"auto"`` probes at the first call.
        timeout: seconds one attempt may take in total (connect + request + response). The default
            (300) is meant for CPU servers under load: a server such as llama-cpp-python's goes on
            computing a request its client gave up on, so a timed-out retry only adds to its queue.
        max_retries: further attempts after the first on a retryable failure.
        backoff: first retry delay in seconds; doubled per retry, capped at ``backoff_max``,
            with up to 10 % jitter. A server's ``Retry-After`` is honoured up to ``backoff_max``.
        context_length: the served model's window (the API does not report it).
        system_prompt: optional system message for the chat endpoint.
        extra_body: extra JSON fields sent with every request (e.g. ``{"top_p": 0.9}``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        endpoint: str = "chat",
        prefill: str = "auto",
        template: str | None = None,
        guided: str = "auto",
        timeout: float = 300.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        context_length: int = 4096,
        system_prompt: str | None = None,
        extra_body: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"base_url must look like http://host:port/v1, got {base_url!r}")
        if not model:
            raise ValueError("model must be a non-empty served model name")
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if prefill not in PREFILL_MODES:
            raise ValueError(f"prefill must be one of {', '.join(PREFILL_MODES)}; got {prefill!r}")
        if guided not in GUIDED_MODES:
            raise ValueError(f"guided must be one of {', '.join(GUIDED_MODES)}; got {guided!r}")
        if template is not None and prefill not in ("auto", "completions"):
            raise ValueError(f"template= is used by prefill='completions' only, not prefill={prefill!r}")
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, max_retries >= 0 and backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._host, self._port = parsed.scheme, parsed.hostname, parsed.port
        self._base_path = parsed.path.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env) or None
        self.endpoint = endpoint
        self.prefill = prefill
        self.guided = guided
        #: the client-side chat template (``prefill="completions"``); loaded now so a bad path fails at once
        self.template: ChatTemplate | None = load_chat_template(template) if template else None
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.context_length = int(context_length)
        self.system_prompt = system_prompt
        self.extra_body = dict(extra_body or {})
        self.name = name or f"openai:{self.base_url}#{model}"
        self._caps: dict[str, Any] | None = None
        self._caps_lock = threading.Lock()
        self._warned: set[str] = set()
        self._warnings: list[str] = []  # what _warn_once said, kept in capabilities
        self._probe_base_tokens: int | None = None
        self._tokenize_path: str | None = None  # the server's tokenize endpoint ("" = none; None = not yet asked)
        self._cue_cache: dict[str, list[int] | None] = {}

    # ------------------------------------------------------------------ API
    @property
    def capabilities(self) -> dict[str, Any]:
        """What this server was found to support (detected on first use; may send probe requests).

        Keys: ``endpoint``; ``prefill`` (the mode in use, ``"raw"`` for the completions endpoint);
        ``guided`` (the constraint mode in use); ``template`` (the client-side template's source,
        or None); ``detected`` (which of them ``auto`` chose by probing); ``warnings``.
        """
        caps = self._ensure_caps()
        return {**caps, "detected": list(caps["detected"]), "warnings": list(caps["warnings"])}

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 128,
        stop: Sequence[str] | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        response_prefix: str = "",
        constraint: "ActionConstraint | None" = None,
    ) -> Completion:
        """POST one completion request (with bounded retries); raise LLMError when it cannot.

        ``response_prefix`` starts the reply as ``capabilities["prefill"]`` says (module docstring).
        With ``constraint``, the reply is exactly one allowed action (no stop strings are sent);
        a server that cannot constrain decodes freely (warned once). ``max_tokens=0`` sends no
        request and returns an empty "length" completion (``prompt_tokens`` is 0: only the server
        could count them). With ``prefill="guided"``, the cue is generated under the grammar, so
        its tokens (estimated at 4 characters each) are added to ``max_tokens`` and taken off
        ``completion_tokens``, and are not in ``prompt_tokens``.
        """
        stops = check_generate_args(max_tokens, temperature, stop)
        if constraint is not None and constraint.empty:
            raise ValueError("constraint allows no action: nothing can be decoded under it")
        if max_tokens == 0:
            return Completion("", 0, 0, 0.0, "length")
        caps = self._ensure_caps()
        prefill, guided = caps["prefill"], caps["guided"]
        if constraint is not None and guided == "none":
            self._warn_once(
                "guided",
                f"{self.name}: the server has no guided decoding (guided='none'); "
                "constrained actions are decoded freely",
            )
            constraint = None
        body: dict[str, Any] = {"model": self.model, "max_tokens": int(max_tokens), "temperature": float(temperature)}
        forced = ""  # a cue that guided decoding forces, cut from the reply
        cue_ids: list[int] | None = None  # its tokens, when the server tokenizes it for us
        cue_tokens = 0  # its tokens (estimated), generated on top of max_tokens
        template_stops: list[str] = []
        if self.endpoint == "completions":
            path, body["prompt"] = "/completions", prompt + response_prefix
        elif prefill == "completions":
            path, body["prompt"] = "/completions", self.prompt_text(prompt, response_prefix)
            template_stops = self.template.stops if self.template is not None else []
        else:
            path, messages = "/chat/completions", chat_messages(prompt, self.system_prompt)
            if response_prefix and prefill in ("assistant", "continue"):
                messages.append({"role": "assistant", "content": response_prefix})
                if prefill == "continue":
                    body.update(continue_final_message=True, add_generation_prompt=False)
            elif response_prefix and prefill == "guided":
                forced, cue_ids = response_prefix, self._cue_ids(response_prefix) if guided == "grammar" else None
                cue_tokens = len(cue_ids) if cue_ids else -(-len(response_prefix) // 4)
                body["max_tokens"] += cue_tokens
            elif response_prefix:  # "none": the cue is only a cue
                self._warn_once(
                    "prefill",
                    f"{self.name}: the server continues no assistant prefill, so the answer "
                    "cue goes into the user message and small models may lose the reply format; pass "
                    "?prefill=completions&template=<.gguf or HF dir> if the server has /completions",
                )
                messages[-1] = {"role": "user", "content": prompt + response_prefix}
            body["messages"] = messages
        if constraint is not None or forced:
            body.update(self._guided_fields(guided, forced, constraint, prefix_ids=cue_ids))
        # a constrained reply ends with its action: the caller's stop strings could only cut it short
        cut_at = template_stops if constraint is not None else template_stops + stops
        # the server matches stops on all it generates, a forced cue included: a stop that could match
        # in or across the cue is left to the client, which matches after the cue, as the local backends do
        server_stops = [s for s in cut_at if not _meets(s, forced)]
        if server_stops:
            body["stop"] = server_stops[:4]  # the OpenAI API accepts at most 4
        if seed is not None:
            body["seed"] = int(seed)
        body.update(caps.get("sampling") or {})
        body.update(self.extra_body)
        start = timed()
        data = self._post_with_retries(path, body)
        text, finish, usage = self._parse(data, chat=path == "/chat/completions")
        if forced and text.startswith(forced):
            text = text[len(forced) :]
        # servers that ignore >4 stops or strip none: enforce the stop strings client-side too
        cut = find_stop(text, cut_at)
        if cut is not None:
            text, finish = text[:cut], "stop"
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=max(0, int(usage.get("completion_tokens") or 0) - cue_tokens),
            latency_s=timed() - start,
            finish_reason=finish,
            cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        )

    def prompt_text(self, prompt: str, response_prefix: str = "") -> str:
        """The raw text sent with ``prefill="completions"``: the chat template's rendering, then the cue."""
        if self.template is None:
            raise LLMError(f"{self.name}: prefill='completions' has no chat template")
        return self.template.render(chat_messages(prompt, self.system_prompt)) + response_prefix

    # ------------------------------------------------------------ detection
    def _ensure_caps(self) -> dict[str, Any]:
        with self._caps_lock:
            if self._caps is None:
                self._caps = self._detect()
            return self._caps

    def _detect(self) -> dict[str, Any]:
        """Settle the prefill and guided modes ("auto" ones by probing the server)."""
        detected: list[str] = []
        caps: dict[str, Any] = {"endpoint": self.endpoint, "detected": detected, "warnings": self._warnings}
        if self.guided == "auto" or (self.prefill == "auto" and self.endpoint == "chat" and self.template is None):
            self._probe_base_tokens = self._plain_request()  # the server must answer (errors propagate)
        guided = self.guided
        if guided == "auto":
            guided = self._probe_guided()
            detected.append("guided")
        if self.endpoint == "completions":
            prefill = "raw"
        elif self.prefill == "auto" and self.template is not None:
            prefill = "completions"
        elif self.prefill == "auto":
            detected.append("prefill")
            if self._continues_trailing_assistant(continue_flags=False):
                prefill = "assistant"
            elif self._continues_trailing_assistant(continue_flags=True):
                prefill = "continue"
            elif self._use_server_template() or self._use_model_file_template():
                prefill = "completions"
            elif guided != "none":
                prefill = "guided"
            else:
                prefill = "none"
        else:
            prefill = self.prefill
            if prefill == "completions" and self.template is None and not self._use_server_template():
                raise LLMError(
                    f"{self.name}: prefill='completions' needs the model's chat template and the server "
                    "reports none on /props: add ?template=<.gguf file | HF tokenizer dir>"
                )
            if prefill == "guided" and guided == "none":
                raise LLMError(
                    f"{self.name}: prefill='guided' needs guided decoding, and the server honours no "
                    "grammar or regex: pass another prefill"
                )
        caps.update(prefill=prefill, guided=guided, template=self.template.source if self.template else None)
        if guided == "grammar":  # a llama.cpp server: decode as the local backends do (its defaults differ)
            caps["sampling"] = {k: v for k, v in LLAMA_CPP_PLAIN_SAMPLING.items() if k not in self.extra_body}
        if prefill == "guided" and guided == "grammar":  # how the cue is forced: as the server's tokens, or spelt
            caps["cue_forced_as"] = f"tokens ({self._tokenize_path})" if self._cue_ids(_PROBE_PROMPT) else "characters"
        return caps

    def _probe(self, path: str, body: dict[str, Any]) -> Any | None:
        """One request that may be refused: the response, or None when the server refused it."""
        try:
            return self._post_with_retries(path, {"model": self.model, "temperature": 0.0, **body}, retries=0)
        except LLMError:
            return None

    def _plain_request(self) -> int:
        """A plain 1-token request (with retries; errors propagate); its prompt tokens (0 when not reported)."""
        body: dict[str, Any] = {"model": self.model, "temperature": 0.0, "max_tokens": 1}
        if self.endpoint == "chat":
            data = self._post_with_retries(
                "/chat/completions", {**body, "messages": chat_messages(_PROBE_PROMPT, self.system_prompt)}
            )
        else:
            data = self._post_with_retries("/completions", {**body, "prompt": _PROBE_PROMPT})
        usage = data.get("usage") if isinstance(data, dict) else None
        n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return int(n) if isinstance(n, (int, float)) and n > 0 else 0

    def _prompt_tokens(self, messages: list[dict[str, str]], extra: dict[str, Any]) -> int | None:
        data = self._probe("/chat/completions", {"messages": messages, "max_tokens": 1, **extra})
        usage = data.get("usage") if isinstance(data, dict) else None
        n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return int(n) if isinstance(n, (int, float)) and n > 0 else None

    def _continues_trailing_assistant(self, *, continue_flags: bool) -> bool:
        """Whether a trailing assistant message is continued (prefilled), judged by prompt-token counts.

        Prefilled, the prompt grows by the assistant text's tokens only: "OK" then "OK OK" add the
        same few tokens. Not prefilled, the first also adds an end-of-turn and a new assistant header.
        """
        user = chat_messages(_PROBE_PROMPT, self.system_prompt)
        n_a = self._probe_base_tokens
        extra = {"continue_final_message": True, "add_generation_prompt": False} if continue_flags else {}
        n_b = self._prompt_tokens(user + [{"role": "assistant", "content": "OK"}], extra)
        n_c = self._prompt_tokens(user + [{"role": "assistant", "content": "OK OK"}], extra)
        if not n_a or n_b is None or n_c is None:
            return False
        return n_a < n_b < n_c and (n_b - n_a) <= (n_c - n_b) + 1

    def _use_server_template(self) -> bool:
        """Take the chat template from llama-server's ``GET /props`` (its root, beside /v1) when it has one."""
        try:
            props = self._request("GET", self._root_path() + "/props", None, timeout=min(self.timeout, 10.0))
        except (_Retryable, LLMError):
            return False
        template = ChatTemplate.from_props(props, source=f"{self.base_url} /props")
        if template is None:
            return False
        self.template = template
        return True

    def _cue_ids(self, cue: str) -> list[int] | None:
        """The cue's tokens as the server's tokenizer splits it (None when the server cannot say).

        llama-cpp-python's server answers ``POST /extras/tokenize``, llama-server ``POST /tokenize``;
        a BOS the endpoint adds (seen by tokenizing "") is dropped. Asked once per cue.
        """
        if cue in self._cue_cache:
            return self._cue_cache[cue]
        ids: list[int] | None = None
        root = self._root_path()
        for path, key, extra in (("/extras/tokenize", "input", {}), ("/tokenize", "content", {"add_special": False})):
            if self._tokenize_path not in (None, path):
                continue
            try:
                got = self._request(
                    "POST", root + path, json.dumps({key: cue, **extra}).encode(), timeout=min(self.timeout, 10.0)
                )
                lead = self._request(
                    "POST", root + path, json.dumps({key: "", **extra}).encode(), timeout=min(self.timeout, 10.0)
                )
                toks, lead_toks = got.get("tokens"), lead.get("tokens")
            except (_Retryable, LLMError, AttributeError):
                continue
            if isinstance(toks, list) and toks and all(isinstance(t, int) for t in toks):
                lead_toks = lead_toks if isinstance(lead_toks, list) else []
                ids = toks[len(lead_toks) :] if lead_toks and toks[: len(lead_toks)] == lead_toks else toks
                self._tokenize_path = path
                break
        if ids is None:
            self._tokenize_path = ""  # none found: spell cues as characters from now on
        self._cue_cache[cue] = ids or None
        return self._cue_cache[cue]

    def _root_path(self) -> str:
        """The server's root path (the base URL's path without a trailing ``/v1``)."""
        return self._base_path[: -len("/v1")] if self._base_path.endswith("/v1") else self._base_path

    def _use_model_file_template(self) -> bool:
        """Take the chat template from the served model's own file, when its name is a local ``.gguf`` path.

        llama-cpp-python's server names a model by its file path unless given ``--model_alias``.
        """
        path = Path(self.model).expanduser()
        if path.suffix.lower() != ".gguf" or not path.is_file():
            return False
        try:
            self.template = ChatTemplate.from_gguf(path)
        except (OSError, ValueError):
            return False
        return True

    def _probe_guided(self) -> str:
        """The first of grammar, regex, guided_regex under which the server writes exactly the forced text."""
        path = "/completions" if self.endpoint == "completions" else "/chat/completions"
        base: dict[str, Any] = {"max_tokens": 8}
        if path == "/completions":
            base["prompt"] = _PROBE_PROMPT + "\n"
        else:
            base["messages"] = chat_messages(_PROBE_PROMPT, self.system_prompt)
        for mode in ("grammar", "regex", "guided_regex"):
            data = self._probe(path, {**base, **self._guided_fields(mode, _PROBE_FORCED, None, tail=False)})
            try:
                text, _, _ = self._parse(data, chat=path == "/chat/completions") if data is not None else ("", "", {})
            except LLMError:
                continue
            if text.strip() == _PROBE_FORCED:
                return mode
        return "none"

    @staticmethod
    def _guided_fields(
        mode: str,
        prefix: str,
        constraint: "ActionConstraint | None",
        *,
        tail: bool = True,
        prefix_ids: Sequence[int] | None = None,
    ) -> dict:
        """The request fields that make the server write ``prefix`` then one action (or, ``tail``, any text)."""
        if mode == "grammar":
            if constraint is None and not tail:
                return {"grammar": f"root ::= {gbnf_literal(prefix)}\n"}
            return {"grammar": prefixed_grammar(prefix, constraint, prefix_ids)}
        regex = prefixed_regex(prefix, constraint) if (constraint is not None or tail) else re.escape(prefix)
        if mode == "regex":
            return {"structured_outputs": {"regex": regex}}
        if mode == "guided_regex":
            return {"guided_regex": regex}
        raise ValueError(f"no guided decoding for mode {mode!r}")

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        self._warnings.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------- internals
    def _parse(self, data: Any, *, chat: bool) -> tuple[str, str, dict[str, Any]]:
        try:
            choice = data["choices"][0]
            if chat:
                text = choice["message"].get("content") or ""
            else:
                text = choice.get("text") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"{self.name}: unexpected response shape: {str(data)[:300]}") from exc
        if not isinstance(text, str):
            raise LLMError(f"{self.name}: completion text is not a string: {text!r:.200}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return text, finish_reason(choice.get("finish_reason")), usage

    def _post_with_retries(self, path: str, body: dict[str, Any], retries: int | None = None) -> Any:
        payload = json.dumps(body).encode("utf-8")
        retries = self.max_retries if retries is None else retries
        errors: list[str] = []
        for attempt in range(retries + 1):
            try:
                return self._request("POST", self._base_path + path, payload)
            except _Retryable as exc:
                errors.append(str(exc))
                delay = getattr(exc, "retry_after", None)
                if attempt == retries:
                    break
                wait = min(self.backoff * (2**attempt), self.backoff_max)
                if delay is not None:
                    wait = min(max(wait, delay), self.backoff_max)
                time.sleep(wait * (1.0 + 0.1 * random.random()))
        raise LLMError(f"{self.name}: request failed after {retries + 1} attempt(s): " + "; ".join(errors[-3:]))

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _request(self, method: str, full_path: str, payload: bytes | None, timeout: float | None = None) -> Any:
        """One HTTP request with a deadline; the JSON response, or _Retryable / LLMError."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        conn = self._connection(timeout)
        try:
            conn.request(method, full_path, body=payload, headers=headers)
            if conn.sock is not None:
                conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
            resp = conn.getresponse()
            chunks: list[bytes] = []
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("response body not complete")
                if conn.sock is not None:
                    conn.sock.settimeout(left)
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            raw = b"".join(chunks)
        except (socket.timeout, TimeoutError) as exc:
            raise _Retryable(f"timed out after {timeout:g} s ({exc})") from exc
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retryable(f"connection error: {exc}") from exc
        finally:
            conn.close()
        snippet = raw[:300].decode("utf-8", "replace")
        if resp.status in RETRY_STATUSES:
            err = _Retryable(f"HTTP {resp.status}: {snippet}")
            retry_after = resp.getheader("Retry-After")
            if retry_after and retry_after.strip().isdigit():
                err.retry_after = float(retry_after)  # type: ignore[attr-defined]
            raise err
        if resp.status >= 400:
            raise _ClientError(f"{self.name}: HTTP {resp.status} (not retried): {snippet}")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LLMError(f"{self.name}: response is not JSON: {snippet}") from exc
