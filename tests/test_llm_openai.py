"""The OpenAI-compatible HTTP client against real servers on 127.0.0.1.

A small threaded ``http.server`` speaks /v1/chat/completions and /v1/completions and can be told
to fail (500, 429, hang, bad JSON) so that timeouts and bounded retries are exercised for real.
When llama-cpp-python's server extra is installed, the client also talks to
``python -m llama_cpp.server`` serving the shipped GGUF.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import re
import warnings
from pathlib import Path

import pytest

from rlem_gym.llm import LLMError, make_llm
from rlem_gym.llm.base import find_stop
from rlem_gym.llm.chat_template import ChatTemplate
from rlem_gym.llm.constraint import ActionConstraint
from rlem_gym.llm.openai_http import (
    LLAMA_CPP_PLAIN_SAMPLING,
    OpenAICompatBackend,
    prefixed_grammar,
    prefixed_regex,
)


def _reply(prompt: str, max_tokens: int, stop: list[str]) -> tuple[str, str, int]:
    """The fake model: answers 'echo <words of the prompt>' word by word; returns (text, finish, n)."""
    words = ["echo"] + prompt.split()
    text, finish, n = "", "stop", 0
    for w in words:
        if n == max_tokens:
            finish = "length"
            break
        text = f"{text} {w}" if text else w
        n += 1
    for s in stop:
        if s in text:
            text, finish = text[: text.index(s)], "stop"
    return text, finish, n


#: server kinds the fake plays: what it does with a trailing assistant message and guided decoding
KINDS = {
    # ignores fields it does not know, has no prefill and no guided decoding (most hosted-API clones)
    "plain": dict(native_prefill=False, continue_flags=False, grammar=False, regex_field=None, strict=False),
    # refuses unknown fields with HTTP 400, as OpenAI's own API does
    "strict": dict(native_prefill=False, continue_flags=False, grammar=False, regex_field=None, strict=True),
    # llama.cpp's llama-server: continues a trailing assistant message, GBNF grammar, /props with the template
    "llama-server": dict(native_prefill=True, continue_flags=False, grammar=True, regex_field=None, strict=False),
    # llama-cpp-python's server: its chat formatter always opens a new assistant turn; GBNF grammar
    "llama-cpp-python": dict(native_prefill=False, continue_flags=False, grammar=True, regex_field=None, strict=False),
    # vLLM >= 0.10: continue_final_message, structured_outputs.regex
    "vllm": dict(
        native_prefill=False, continue_flags=True, grammar=False, regex_field="structured_outputs", strict=False
    ),
    # older vLLM: continue_final_message, guided_regex
    "vllm-old": dict(
        native_prefill=False, continue_flags=True, grammar=False, regex_field="guided_regex", strict=False
    ),
}
STANDARD_FIELDS = {"model", "max_tokens", "temperature", "messages", "prompt", "stop", "seed"}
PROPS_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _chat_prompt_tokens(messages: list[dict], continued: bool) -> int:
    """The fake chat template's token count: a closed turn is header (2) + words + end (1), the generation
    prompt a header (2); a continued last assistant turn is its header and words only."""
    n = 0
    for i, m in enumerate(messages):
        words = len(m["content"].split())
        n += 2 + words if (continued and i == len(messages) - 1) else 3 + words
    return n if continued else n + 2


def _gbnf_reply(grammar: str, free: str, candidates: list[str]) -> str | None:
    """A toy GBNF 'decoder': a root that starts with a string literal, then a rest (free text), an action
    (the first candidate) or nothing."""
    m = re.match(r'root ::= ("(?:[^"\\]|\\.)*"|(?:<\[\d+\]> ?)+)(?: ?([a-z-]+))?\n', grammar)
    if m is None:
        return candidates[0] if candidates else None
    head, tail = m.group(1), m.group(2)
    lit = json.loads(head) if head.startswith('"') else "".join(chr(int(t)) for t in re.findall(r"\d+", head))
    if tail is None:
        return lit
    return lit + (free if tail == "rest" else (candidates[0] if candidates else ""))


def _regex_reply(regex: str, free: str, candidates: list[str]) -> str | None:
    """A toy regex 'decoder': the first of (the pattern read as a literal, free text, candidates) it matches."""
    literal = re.sub(r"\\(.)", r"\1", regex)
    for text in [literal, *(c for c in candidates)] + [literal.split("[")[0] + free]:
        if re.fullmatch(regex, text):
            return text
    return None


class FakeServer:
    """A real HTTP server in a thread; ``plan`` lists how to answer the next requests, ``kind`` which server
    it plays (see KINDS), ``guided_candidates`` what its 'guided decoding' may answer."""

    def __init__(self, kind: str = "plain") -> None:
        self.plan: list[str] = []  # "ok" | "500" | "429" | "400" | "hang" | "badjson"; empty -> "ok"
        self.requests: list[dict] = []
        self.hang_s = 3.0
        self.kind = kind
        self.guided_candidates: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                server.requests.append({"path": self.path, "method": "GET"})
                if self.path == "/props" and server.kind == "llama-server":
                    props = {"chat_template": PROPS_TEMPLATE, "bos_token": "<s>", "eos_token": "<|end|>"}
                    self._send(200, json.dumps(props).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self.path == "/extras/tokenize" and server.kind == "llama-cpp-python":
                    # a character-level tokenizer that puts BOS (1) in front, as llama-cpp-python's does for some models
                    self._send(200, json.dumps({"tokens": [1] + [ord(c) for c in body["input"]]}).encode())
                    return
                if "/v1/" not in self.path:
                    self._send(404, b'{"detail": "Not Found"}')
                    return
                action = server.plan.pop(0) if server.plan else "ok"
                try:
                    if action == "hang":
                        time.sleep(server.hang_s)
                        action = "ok"
                    if action == "ok" and KINDS[server.kind]["strict"] and set(body) - STANDARD_FIELDS:
                        action = "400"
                    if action in ("500", "429", "400"):
                        self.send_response(int(action))
                        if action == "429":
                            self.send_header("Retry-After", "0")
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(b'{"error": {"message": "planned failure"}}')
                        return
                    if action == "badjson":
                        payload = b"<html>not json</html>"
                    else:
                        payload = json.dumps(self._complete(body)).encode()
                    self._send(200, payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def _complete(self, body: dict) -> dict:
                kind = KINDS[server.kind]
                chat = self.path.endswith("/chat/completions")
                if chat:
                    messages = body["messages"]
                    last_assistant = messages[-1]["role"] == "assistant"
                    flags = body.get("continue_final_message") is True and body.get("add_generation_prompt") is False
                    continued = last_assistant and (kind["native_prefill"] or (kind["continue_flags"] and flags))
                    prompt, n_prompt = messages[-1]["content"], _chat_prompt_tokens(messages, continued)
                else:
                    prompt = body["prompt"]
                    n_prompt = len(prompt.split())
                text, finish, n = _reply(prompt, int(body.get("max_tokens", 16)), body.get("stop") or [])
                guided = None
                if kind["grammar"] and "grammar" in body:
                    guided = _gbnf_reply(body["grammar"], " " + text, server.guided_candidates)
                field = kind["regex_field"]
                if field == "structured_outputs" and "regex" in (body.get("structured_outputs") or {}):
                    guided = _regex_reply(body["structured_outputs"]["regex"], " " + text, server.guided_candidates)
                if field == "guided_regex" and "guided_regex" in body:
                    guided = _regex_reply(body["guided_regex"], " " + text, server.guided_candidates)
                if guided is not None:
                    text, finish, n = guided, "stop", len(guided.split())
                choice = {"index": 0, "finish_reason": finish}
                choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                usage = {"prompt_tokens": n_prompt, "completion_tokens": n}
                return {"object": "chat.completion" if chat else "text_completion", "choices": [choice], "usage": usage}

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def posts(self) -> list[dict]:
        """The POST requests received so far."""
        return [r for r in self.requests if "body" in r]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def plain(url: str, **kw) -> OpenAICompatBackend:
    """A backend that sends no probe (prefill and guided decoding fixed): for the transport tests."""
    return OpenAICompatBackend(url, "m", prefill="none", guided="none", **kw)


@pytest.fixture
def server():
    srv = FakeServer()
    yield srv
    srv.close()


def test_chat_completion_round_trip(server, monkeypatch):
    monkeypatch.setenv("RLEM_TEST_KEY", "sk-test")
    llm = make_llm(f"openai:{server.url}#tiny-model", api_key_env="RLEM_TEST_KEY")
    out = llm.generate("find red shoes", max_tokens=10, stop=["###"], temperature=0.0, seed=3)
    assert out.text == "echo find red shoes"
    assert (out.prompt_tokens, out.completion_tokens, out.finish_reason) == (8, 4, "stop")  # 3 words + template
    req = server.requests[-1]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "tiny-model"
    assert req["body"]["messages"] == [{"role": "user", "content": "find red shoes"}]
    assert (req["body"]["max_tokens"], req["body"]["stop"], req["body"]["seed"]) == (10, ["###"], 3)


def test_length_and_stop_and_completions_endpoint(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatBackend(server.url, "m", endpoint="completions", guided="none")
    out = llm.generate("a b c d e f", max_tokens=3)
    assert (out.text, out.finish_reason, out.completion_tokens) == ("echo a b", "length", 3)
    assert server.requests[-1]["path"] == "/v1/completions"
    assert server.requests[-1]["auth"] is None  # no key configured -> no header
    assert llm.generate("x y STOP z", max_tokens=9, stop=["STOP"]).text == "echo x y "


def test_response_prefix_raw_completions_and_no_prefill(server, monkeypatch):
    """Raw completions: a true prefill (prompt + prefix); prefill='none': appended to the user message, warned once."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    raw = OpenAICompatBackend(server.url, "m", endpoint="completions", guided="none")
    out = raw.generate("new input\n\n", max_tokens=9, response_prefix="Encouraged:\n")
    assert server.requests[-1]["body"]["prompt"] == "new input\n\nEncouraged:\n"
    assert out.text == "echo new input Encouraged:"  # the server's reply, prefix not added to it
    assert raw.capabilities["prefill"] == "raw"
    chat = plain(server.url, system_prompt="sys")
    with pytest.warns(RuntimeWarning, match="no assistant prefill"):
        chat.generate("history\n", max_tokens=4, response_prefix="Action:")
    body = server.requests[-1]["body"]
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "history\nAction:"}]
    assert set(body) == {"model", "max_tokens", "temperature", "messages"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per backend
        chat.generate("again\n", max_tokens=4, response_prefix="Action:")
    assert chat.capabilities["prefill"] == "none" and len(chat.capabilities["warnings"]) == 1
    with pytest.raises(ValueError, match="max_tokens"):
        chat.generate("x", max_tokens=-1)


def test_overlapping_stops_cut_at_the_earliest(server, monkeypatch):
    """Client-side stops cut where the first match begins, whatever the order of the stop list."""
    assert find_stop("xabc", ["bc", "ab"]) == 1 and find_stop("xabc", ["ab", "bc"]) == 1
    assert find_stop("xabc", ["zz"]) is None and find_stop("abxab", ["ab"], 1) == 3
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatBackend(server.url, "m", endpoint="completions", guided="none")
    # the server gets only the first 4 stops, so the overlapping pair is left to the client
    out = llm.generate("xabc", max_tokens=9, stop=["S1", "S2", "S3", "S4", "bc", "ab"])
    assert server.requests[-1]["body"]["stop"] == ["S1", "S2", "S3", "S4"]
    assert (out.text, out.finish_reason) == ("echo x", "stop")


def test_zero_max_tokens_sends_no_request(server, monkeypatch):
    """max_tokens=0 gives an empty "length" completion, as the local backends do, without asking the server."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatBackend(server.url, "m")
    out = llm.generate("hello there", max_tokens=0, stop=["x"])  # not even a probe
    assert (out.text, out.completion_tokens, out.finish_reason) == ("", 0, "length")
    assert server.requests == []
    with pytest.raises(ValueError, match="max_tokens"):
        llm.generate("hello", max_tokens=-1)


def test_500_then_200_is_retried(server):
    server.plan = ["500", "429"]
    llm = plain(server.url, max_retries=3, backoff=0.01)
    assert llm.generate("hello", max_tokens=5).text == "echo hello"
    assert len(server.requests) == 3


def test_persistent_500_raises_after_bounded_retries(server):
    server.plan = ["500"] * 10
    llm = plain(server.url, max_retries=2, backoff=0.01)
    with pytest.raises(LLMError, match=r"3 attempt\(s\).*HTTP 500"):
        llm.generate("hello")
    assert len(server.requests) == 3


def test_client_error_is_not_retried(server):
    server.plan = ["400"]
    llm = plain(server.url, max_retries=3, backoff=0.01)
    with pytest.raises(LLMError, match="HTTP 400"):
        llm.generate("hello")
    assert len(server.requests) == 1


def test_timeout_is_honoured_and_bounded(server):
    server.plan = ["hang"] * 10
    server.hang_s = 3.0
    llm = plain(server.url, timeout=0.3, max_retries=1, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(LLMError, match="timed out"):
        llm.generate("hello")
    elapsed = time.monotonic() - start
    assert len(server.requests) == 2
    # 2 attempts x 0.3 s + one backoff; far below the 3 s the server sleeps
    assert elapsed < 2.5


def test_hang_then_answer_succeeds(server):
    server.plan = ["hang"]
    server.hang_s = 1.0
    llm = plain(server.url, timeout=0.3, max_retries=2, backoff=0.01)
    assert llm.generate("ok then").text == "echo ok then"


def test_bad_json_and_refused_connection():
    srv = FakeServer()
    try:
        srv.plan = ["badjson"]
        with pytest.raises(LLMError, match="not JSON"):
            plain(srv.url, max_retries=0).generate("hi")
    finally:
        srv.close()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(LLMError, match="connection error"):
        llm.generate("hi")  # the first probe reports the refused connection
    with pytest.raises(LLMError, match="connection error"):
        llm.generate("hi")  # and again: a failed detection is not kept


def test_bad_specs_and_arguments():
    with pytest.raises(ValueError, match="model"):
        make_llm("openai:http://127.0.0.1:8000/v1")
    with pytest.raises(ValueError, match="accepted forms"):
        make_llm("claude:whatever")
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatBackend("127.0.0.1:8000", "m")
    with pytest.raises(TypeError, match=r"spec must be a string or None, got \w*Path"):
        make_llm(Path("model.gguf"))


# ------------------------------------------------------------------ prefill and guided decoding
CUE = "Encouraged:\n"
ACTIONS = ActionConstraint(("click[blue shirt]", "click[back to search]"), (("search[", "]"),))


@pytest.fixture
def kind_server(request):
    srv = FakeServer(request.param)
    yield srv
    srv.close()


@pytest.mark.parametrize(
    "kind_server,prefill,guided",
    [
        ("plain", "none", "none"),
        ("strict", "none", "none"),
        ("llama-server", "assistant", "grammar"),
        ("llama-cpp-python", "guided", "grammar"),
        ("vllm", "continue", "regex"),
        ("vllm-old", "continue", "guided_regex"),
    ],
    indirect=["kind_server"],
)
def test_auto_detects_what_each_server_kind_supports(kind_server, prefill, guided, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = make_llm(f"openai:{kind_server.url}#m")
    caps = llm.capabilities
    assert (caps["prefill"], caps["guided"], caps["template"]) == (prefill, guided, None)
    assert caps["detected"] == ["guided", "prefill"] and caps["endpoint"] == "chat"
    n_probes = len(kind_server.requests)
    assert 2 <= n_probes <= 9  # a handful of 1- to 8-token requests, once
    llm.generate("x", max_tokens=2)
    assert len(kind_server.requests) == n_probes + 1


def _chat(server: FakeServer, **kw) -> OpenAICompatBackend:
    return OpenAICompatBackend(server.url, "m", **kw)


@pytest.mark.parametrize("kind_server", ["llama-server"], indirect=True)
def test_assistant_prefill_sends_a_trailing_assistant_message(kind_server):
    """llama-server (and Ollama) continue a trailing assistant message by themselves: no extra field."""
    llm = _chat(kind_server, system_prompt="sys")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = llm.generate("find shoes\n", max_tokens=5, stop=["\n\n"], response_prefix=CUE)
    body = kind_server.requests[-1]["body"]
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "find shoes\n"},
        {"role": "assistant", "content": CUE},
    ]
    # a llama.cpp server: plain sampling as the local backends decode (extra_body would override it)
    assert set(body) == {"model", "max_tokens", "temperature", "messages", "stop", *LLAMA_CPP_PLAIN_SAMPLING}
    assert body["repeat_penalty"] == 1.0 and llm.capabilities["sampling"] == LLAMA_CPP_PLAIN_SAMPLING
    assert _chat(kind_server, extra_body={"repeat_penalty": 1.1}).capabilities["sampling"] == {
        "top_k": 0,
        "min_p": 0.0,
        "top_p": 1.0,
    }
    assert out.text == "echo Encouraged:"  # the fake echoes the message it continues
    # constrained: the grammar is the action's alone, the cue being prefilled already; no stop strings
    kind_server.guided_candidates = ["click[blue shirt]"]
    out = llm.generate("find shoes\n", max_tokens=20, stop=["\n"], response_prefix=CUE, constraint=ACTIONS)
    body = kind_server.requests[-1]["body"]
    assert body["grammar"] == ACTIONS.gbnf() and "stop" not in body
    assert out.text == "click[blue shirt]" and ACTIONS.matches(out.text)


@pytest.mark.parametrize("kind_server", ["vllm", "vllm-old"], indirect=True)
def test_vllm_continue_final_message_and_regex(kind_server):
    """vLLM: the cue as a trailing assistant message with continue_final_message; actions by regex."""
    llm = _chat(kind_server)
    llm.generate("find shoes\n", max_tokens=5, response_prefix=CUE)
    body = kind_server.requests[-1]["body"]
    assert body["messages"][-1] == {"role": "assistant", "content": CUE}
    assert (body["continue_final_message"], body["add_generation_prompt"]) == (True, False)
    assert not {"grammar", "structured_outputs", "guided_regex"} & set(body)
    kind_server.guided_candidates = ["click[nothing]", "search[red shoes]"]
    out = llm.generate("find shoes\n", max_tokens=20, stop=["\n"], response_prefix=CUE, constraint=ACTIONS)
    body = kind_server.requests[-1]["body"]
    if kind_server.kind == "vllm":
        assert body["structured_outputs"] == {"regex": ACTIONS.regex()} and "guided_regex" not in body
    else:
        assert body["guided_regex"] == ACTIONS.regex() and "structured_outputs" not in body
    assert "stop" not in body and body["continue_final_message"] is True
    assert out.text == "search[red shoes]" and ACTIONS.matches(out.text)


@pytest.mark.parametrize("kind_server", ["llama-cpp-python"], indirect=True)
def test_guided_prefill_forces_the_cue_by_grammar(kind_server):
    """llama-cpp-python's server: the cue is forced by a grammar, as the server's own tokens, then free text."""
    llm = _chat(kind_server)
    cue_ids = [ord(c) for c in CUE]  # the fake's tokenizer, its BOS dropped
    out = llm.generate("find shoes", max_tokens=5, stop=["zzz", "\n\n", ":"], response_prefix=CUE)
    body = kind_server.requests[-1]["body"]
    assert body["messages"] == [{"role": "user", "content": "find shoes"}]
    assert body["grammar"] == prefixed_grammar(CUE, None, cue_ids)
    assert (
        body["grammar"] == "root ::= <[69]> <[110]> <[99]> <[111]> <[117]> <[114]> <[97]> <[103]> <[101]> <[100]> "
        "<[58]> <[10]> rest\nrest ::= [^\\x00]*\n"
    )
    assert body["stop"] == ["zzz"]  # "\n\n" could match across the cue's end, ":" inside it: left to the client
    assert body["max_tokens"] == 5 + len(cue_ids)  # the cue's tokens generated on top
    assert out.text == " echo find shoes"  # the cue cut, the rest free
    assert llm.capabilities["cue_forced_as"] == "tokens (/extras/tokenize)"
    n_requests = len(kind_server.requests)
    kind_server.guided_candidates = ["click[back to search]"]
    out = llm.generate("find shoes", max_tokens=20, stop=["zzz"], response_prefix=CUE, constraint=ACTIONS)
    assert len(kind_server.requests) == n_requests + 1  # the cue's tokens were asked for once
    body = kind_server.requests[-1]["body"]
    assert body["grammar"] == prefixed_grammar(CUE, ACTIONS, cue_ids) and "stop" not in body
    assert body["grammar"].startswith("root ::= <[69]> ") and "\nprefilled-action ::= " in body["grammar"]
    assert out.text == "click[back to search]"
    out = llm.generate("find shoes", max_tokens=20, constraint=ACTIONS)  # no cue: the action grammar alone
    assert kind_server.requests[-1]["body"]["grammar"] == ACTIONS.gbnf()
    # a server with no tokenize endpoint: the cue is spelt as characters
    spelt = prefixed_grammar(CUE, None)
    assert spelt == 'root ::= "Encouraged:\\n" rest\nrest ::= [^\\x00]*\n'
    assert prefixed_grammar(CUE, ACTIONS).startswith('root ::= "Encouraged:\\n" prefilled-action\n')


def test_prefixed_regex_and_grammar_shapes():
    assert prefixed_regex("Action: ", ACTIONS) == "Action:\\ " + ACTIONS.regex()
    assert re.fullmatch(prefixed_regex("Action: ", ACTIONS), "Action: search[red]")
    assert re.fullmatch(prefixed_regex(CUE, None), CUE + "anything\nat all")
    assert prefixed_grammar("", ACTIONS) == ACTIONS.gbnf()
    assert prefixed_grammar("A", ACTIONS).count("::=") == ACTIONS.gbnf().count("::=") + 1


@pytest.mark.parametrize("kind_server", ["strict"], indirect=True)
def test_no_prefill_no_guided_warns_once_and_records(kind_server):
    """A server that refuses every non-standard field: the cue goes in the user message, actions are free."""
    llm = _chat(kind_server)
    with pytest.warns(RuntimeWarning) as record:
        for _ in range(2):
            out = llm.generate("find shoes", max_tokens=9, stop=["shoes"], response_prefix=CUE, constraint=ACTIONS)
    assert sorted(str(w.message).split(": ", 1)[1][:30] for w in record) == [
        "the server continues no assist",
        "the server has no guided decod",
    ]
    caps = llm.capabilities
    assert (caps["prefill"], caps["guided"], len(caps["warnings"])) == ("none", "none", 2)
    body = kind_server.requests[-1]["body"]
    assert body["messages"] == [{"role": "user", "content": "find shoes" + CUE}] and body["stop"] == ["shoes"]
    assert out.text == "echo find "  # free decoding, stop strings kept


def test_completions_prefill_with_the_gguf_template(server, monkeypatch):
    """?template=<gguf>: the GGUF's template rendered here, the cue after the generation prompt, on /completions."""
    from rlem_gym.models import smollm2_gguf_path

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gguf = smollm2_gguf_path()
    llm = make_llm(f"openai:{server.url}#m?template={gguf}&guided=none&ctx=2048")
    assert llm.context_length == 2048
    out = llm.generate("find shoes", max_tokens=40, stop=["\n\n"], response_prefix=CUE)
    req = server.requests[-1]
    assert req["path"] == "/v1/completions" and len(server.requests) == 1  # nothing probed
    expected = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nfind shoes<|im_end|>\n<|im_start|>assistant\n" + CUE
    )
    assert req["body"]["prompt"] == expected == llm.prompt_text("find shoes", CUE)
    assert req["body"]["stop"] == ["<|im_end|>", "\n\n"]  # the template's end of turn first
    assert out.text.startswith("echo <|im_start|>system")  # the fake echoes the prompt; the stop cut it
    assert llm.capabilities == {
        "endpoint": "chat",
        "prefill": "completions",
        "guided": "none",
        "template": str(gguf),
        "detected": [],
        "warnings": [],
    }
    tmpl = ChatTemplate.from_gguf(gguf)
    assert (tmpl.bos_token, tmpl.eos_token, tmpl.adds_bos) == ("<|im_start|>", "<|im_end|>", False)


def test_model_named_by_its_gguf_path_gives_the_template(server, monkeypatch):
    """llama-cpp-python's server names a model by its file path when it has no alias: that file's template is used."""
    from rlem_gym.models import smollm2_gguf_path

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gguf = smollm2_gguf_path()
    llm = make_llm(f"openai:{server.url}#{gguf}")
    assert (llm.capabilities["prefill"], llm.capabilities["template"]) == ("completions", str(gguf))
    llm.generate("hi", max_tokens=3, response_prefix=CUE)
    tail = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" + CUE
    assert server.requests[-1]["body"]["prompt"].endswith(tail)


def test_chat_template_rendering_and_bos(tmp_path):
    """Jinja templates render as transformers renders them; a BOS the server adds itself is not doubled."""
    jinja = tmp_path / "t.jinja"
    jinja.write_text(
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] | tojson }}\n"
        "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    tmpl = ChatTemplate(template=jinja.read_text(), bos_token="<s>", adds_bos=True)
    msgs = [{"role": "user", "content": "héllo"}]
    assert tmpl.render(msgs) == '[user] "héllo"\n[assistant] '  # BOS left to the server, non-ASCII kept
    tmpl.adds_bos = False
    assert tmpl.render(msgs, add_generation_prompt=False) == '<s>[user] "héllo"\n'
    bad = ChatTemplate(template="{{ raise_exception('no system role') }}")
    with pytest.raises(Exception, match="no system role"):
        bad.render(msgs)
    with pytest.raises(ValueError, match="not a GGUF"):
        ChatTemplate.from_gguf(jinja)


@pytest.mark.parametrize("kind_server", ["llama-server"], indirect=True)
def test_completions_prefill_with_the_servers_template(kind_server):
    """prefill=completions without a template: llama-server's /props supplies it."""
    llm = _chat(kind_server, prefill="completions", guided="none")
    llm.generate("hi", max_tokens=3, response_prefix="Action:")
    assert kind_server.requests[0] == {"path": "/props", "method": "GET"}
    assert kind_server.requests[-1]["body"]["prompt"] == "<|user|>hi<|end|>\n<|assistant|>Action:"
    assert kind_server.requests[-1]["body"]["stop"] == ["<|end|>"]
    assert llm.capabilities["template"].endswith("/v1 /props")


def test_explicit_modes_that_cannot_work_raise(server):
    with pytest.raises(LLMError, match=r"needs the model's chat template.*\?template="):
        _chat(server, prefill="completions", guided="none").generate("hi", max_tokens=2)
    with pytest.raises(LLMError, match="needs guided decoding"):
        _chat(server, prefill="guided").generate("hi", max_tokens=2)
    with pytest.raises(ValueError, match="allows no action"):
        _chat(server).generate("hi", max_tokens=2, constraint=ActionConstraint())


def test_spec_options():
    url = "http://127.0.0.1:9/v1"
    llm = make_llm(f"openai:{url}#qwen?prefill=continue&guided=regex&timeout=5")
    assert (llm.model, llm.prefill, llm.guided, llm.timeout, llm.base_url) == ("qwen", "continue", "regex", 5.0, url)
    assert make_llm(f"openai:{url}#q?prefill=none", prefill="assistant").prefill == "assistant"  # kwargs win
    with pytest.raises(ValueError, match="options are prefill, template, guided"):
        make_llm(f"openai:{url}#q?prefil=none")
    with pytest.raises(ValueError, match="prefill must be one of"):
        make_llm(f"openai:{url}#q?prefill=magic")
    with pytest.raises(ValueError, match="guided must be one of"):
        make_llm(f"openai:{url}#q?guided=json")
    with pytest.raises(ValueError, match="must be a number"):
        make_llm(f"openai:{url}#q?ctx=big")
    with pytest.raises(ValueError, match="template= is used by prefill='completions' only"):
        make_llm(f"openai:{url}#q?prefill=continue&template=x.gguf")
    with pytest.raises(FileNotFoundError):
        make_llm(f"openai:{url}#q?template=/nonexistent/model.gguf")
    with pytest.raises(ValueError, match="model"):
        make_llm(f"openai:{url}#?prefill=none")


def test_missing_llama_cpp_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    with pytest.raises(ImportError, match=r"rlem-gym\[llamacpp\]"):
        make_llm("smollm2-gguf")


# --------------------------------------------------------------- llama.cpp's own OpenAI server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` with the shipped GGUF on 127.0.0.1 (skipped without the extra)."""
    for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"llama-cpp-python[server] is not installed ({mod} missing)")
    from rlem_gym.models import smollm2_gguf_path

    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_gguf_path()),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(os.cpu_count() or 1),
    ]
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    log_file = open(log, "w")  # a file, not a pipe: the server logs ~200 kB at start-up
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not come up within 120 s")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


def test_llama_cpp_server_matches_in_process_backend(llama_server, gguf_llm):
    # no sampling options given: the backend itself sends llama.cpp's plain greedy (no repeat penalty)
    llm = make_llm(f"openai:{llama_server}#smollm2", timeout=120)
    prompt = "What is the capital of France? Answer in one word."
    out = llm.generate(prompt, max_tokens=12)
    assert "paris" in out.text.lower()
    assert out.prompt_tokens > 0 and 0 < out.completion_tokens <= 12
    gguf_llm.reset_cache()
    assert out.text == gguf_llm.generate(prompt, max_tokens=12).text  # same file, same template, greedy
    cut = llm.generate("List three colors, one per line, numbered.", max_tokens=30, stop=["\n"])
    assert "\n" not in cut.text and cut.text.strip()
    short = llm.generate("Write a long essay about the ocean.", max_tokens=4)
    assert (short.finish_reason, short.completion_tokens) == ("length", 4)


def _webshop_advice_prompt(llm):
    """The static agent's real first prompt on a WebShop goal (default exemplars, the Encouraged: cue)."""
    import gymnasium as gym

    import rlem_gym  # noqa: F401  (registers the env ids)
    from rlem_gym.agents import get_adapter
    from rlem_gym.prompts import build_advice_prompt, prompt_budget
    from rlem_gym.trajectory import Situation

    ws = get_adapter("webshop")
    env = gym.make("rlem_gym/WebShop-v0", shown_results=3)
    try:
        obs, info = env.reset(seed=0, options={"task_index": 0})
    finally:
        env.close()
    task, observation, instruction = ws.memory_key(obs, info)
    query = Situation(
        task=task, observation=observation, instruction=instruction, available_actions=ws.available_actions(info)
    )
    built = build_advice_prompt(
        llm,
        preamble=ws.preamble,
        render_input=ws.render_input,
        exemplars=ws.default_exemplars(),
        query=query,
        budget=prompt_budget(llm, 48),
    )
    return ws, built


def test_llama_cpp_server_reply_continues_the_answer_cue(llama_server, gguf_llm):
    """Issue 16: served by llama-cpp-python, the reply starts with the advice block, not the prompt's pattern."""
    from rlem_gym.advice import parse_advice, parse_advice_line
    from rlem_gym.agents.rememberer import DEFAULT_STOP
    from rlem_gym.models import smollm2_gguf_path

    ws, built = _webshop_advice_prompt(gguf_llm)
    assert built.response_prefix == CUE
    kw = dict(max_tokens=48, stop=list(DEFAULT_STOP), response_prefix=CUE)
    # auto: this server continues no trailing assistant message and has no /props, and its model has an
    # alias: the cue is forced by a grammar
    auto = make_llm(f"openai:{llama_server}#smollm2", timeout=120)
    out = auto.generate(built.text, **kw)
    assert (auto.capabilities["prefill"], auto.capabilities["guided"]) == ("guided", "grammar")
    assert auto.capabilities["sampling"]["repeat_penalty"] == 1.0
    first = out.text.strip().splitlines()[0]
    assert parse_advice_line(first, ws.extract_actions) is not None, out.text  # an action line first
    assert parse_advice(CUE + out.text, ws.extract_actions).encouraged
    # completions with the GGUF's own template: the very reply of the in-process llama.cpp backend
    tmpl = make_llm(f"openai:{llama_server}#smollm2?template={smollm2_gguf_path()}", timeout=120)
    served = tmpl.generate(built.text, **kw)
    gguf_llm.reset_cache()
    local = gguf_llm.generate(built.text, **kw)
    assert served.text == local.text and served.prompt_tokens == local.prompt_tokens
    assert parse_advice(CUE + served.text, ws.extract_actions).encouraged


def test_llama_cpp_server_constrained_action(llama_server):
    """A constraint through the server's GBNF grammar: exactly one allowed action, after the cue or without one."""
    from rlem_gym.models import smollm2_gguf_path

    actions = ActionConstraint(("click[blue shirt]", "click[back to search]", "click[< prev]"), (("search[", "]"),))
    prompt = "Task: buy a blue shirt.\nAvailable actions: search[<query>], click[blue shirt], click[back to search]\n"
    for spec in (f"openai:{llama_server}#smollm2", f"openai:{llama_server}#smollm2?template={smollm2_gguf_path()}"):
        llm = make_llm(spec, timeout=120)
        for cue in ("Action: ", ""):
            out = llm.generate(prompt, max_tokens=48, stop=["\n"], response_prefix=cue, constraint=actions)
            assert actions.matches(out.text), (spec, cue, out.text)
        assert llm.capabilities["guided"] == "grammar"
