"""OpenAI-compatible HTTP backend (vLLM, the llama.cpp server, Ollama, hosted APIs) on the stdlib only.

No SDK: one JSON POST per call over ``http.client``. Each attempt has a real deadline (connect,
send and every read are bounded by what is left of ``timeout``); connection errors, timeouts,
HTTP 429 and 5xx are retried a bounded number of times with exponential backoff; anything else,
or running out of retries, raises :class:`~rlem_gym.llm.base.LLMError`. A failure is never turned
into a made-up completion.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import time
import urllib.parse
from typing import Any, Sequence

from rlem_gym.llm.base import (
    LLM, Completion, LLMError, chat_messages, check_generate_args, find_stop, finish_reason, timed,
)

#: HTTP statuses worth retrying: rate limiting and server-side failures
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """One attempt failed in a way that a later attempt may not."""


class OpenAICompatBackend(LLM):
    """A model served behind an OpenAI-compatible ``/v1`` API.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name sent as ``"model"``.
        api_key: bearer token; ``None`` reads the environment variable ``api_key_env``
            (no header is sent when neither is set, as local servers need none).
        api_key_env: environment variable holding the key (default ``OPENAI_API_KEY``).
        endpoint: ``"chat"`` (``/chat/completions``, the server applies the chat template) or
            ``"completions"`` (``/completions``, raw prompt, for base models).

    ``response_prefix``: with ``endpoint="completions"`` it is appended to the prompt (a true
    prefill). The chat endpoint has no standard way to prefill the assistant turn, so with
    ``endpoint="chat"`` the prefix is appended to the user message text instead (the model sees
    the cue but is not forced to start with it); no non-standard fields are sent. Servers that
    support prefill can be reached through ``endpoint="completions"`` with a prompt you
    template yourself, or via ``extra_body``.
        timeout: seconds one attempt may take in total (connect + request + response).
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
        timeout: float = 60.0,
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
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, max_retries >= 0 and backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._host, self._port = parsed.scheme, parsed.hostname, parsed.port
        self._base_path = parsed.path.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env) or None
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.context_length = int(context_length)
        self.system_prompt = system_prompt
        self.extra_body = dict(extra_body or {})
        self.name = name or f"openai:{self.base_url}#{model}"

    # ------------------------------------------------------------------ API
    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 128,
        stop: Sequence[str] | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        response_prefix: str = "",
    ) -> Completion:
        """POST one completion request (with bounded retries); raise LLMError when it cannot.

        ``response_prefix`` is appended to the prompt text (see the class docstring for what
        that means on each endpoint). ``max_tokens=0`` sends no request and returns an empty
        "length" completion (``prompt_tokens`` is 0: only the server could count them).
        """
        stops = check_generate_args(max_tokens, temperature, stop)
        if max_tokens == 0:
            return Completion("", 0, 0, 0.0, "length")
        body: dict[str, Any] = {"model": self.model, "max_tokens": int(max_tokens), "temperature": float(temperature)}
        if self.endpoint == "chat":
            body["messages"] = chat_messages(prompt + response_prefix, self.system_prompt)
            path = "/chat/completions"
        else:
            body["prompt"] = prompt + response_prefix
            path = "/completions"
        if stops:
            body["stop"] = stops[:4]  # the OpenAI API accepts at most 4
        if seed is not None:
            body["seed"] = int(seed)
        body.update(self.extra_body)
        start = timed()
        data = self._post_with_retries(path, body)
        text, finish, usage = self._parse(data)
        # servers that ignore >4 stops or strip none: enforce the stop strings client-side too
        cut = find_stop(text, stops)
        if cut is not None:
            text, finish = text[:cut], "stop"
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_s=timed() - start,
            finish_reason=finish,
            cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        )

    # ------------------------------------------------------------- internals
    def _parse(self, data: Any) -> tuple[str, str, dict[str, Any]]:
        try:
            choice = data["choices"][0]
            if self.endpoint == "chat":
                text = choice["message"].get("content") or ""
            else:
                text = choice.get("text") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"{self.name}: unexpected response shape: {str(data)[:300]}") from exc
        if not isinstance(text, str):
            raise LLMError(f"{self.name}: completion text is not a string: {text!r:.200}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return text, finish_reason(choice.get("finish_reason")), usage

    def _post_with_retries(self, path: str, body: dict[str, Any]) -> Any:
        payload = json.dumps(body).encode("utf-8")
        errors: list[str] = []
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(path, payload)
            except _Retryable as exc:
                errors.append(str(exc))
                delay = getattr(exc, "retry_after", None)
                if attempt == self.max_retries:
                    break
                wait = min(self.backoff * (2**attempt), self.backoff_max)
                if delay is not None:
                    wait = min(max(wait, delay), self.backoff_max)
                time.sleep(wait * (1.0 + 0.1 * random.random()))
        raise LLMError(
            f"{self.name}: request failed after {self.max_retries + 1} attempt(s): " + "; ".join(errors[-3:])
        )

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _post_once(self, path: str, payload: bytes) -> Any:
        deadline = time.monotonic() + self.timeout
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        conn = self._connection(self.timeout)
        try:
            conn.request("POST", self._base_path + path, body=payload, headers=headers)
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
            raise _Retryable(f"timed out after {self.timeout:g} s ({exc})") from exc
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
            raise LLMError(f"{self.name}: HTTP {resp.status} (not retried): {snippet}")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LLMError(f"{self.name}: response is not JSON: {snippet}") from exc
