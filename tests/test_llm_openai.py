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

import pytest

from pathlib import Path

from rlem_gym.llm import LLMError, make_llm
from rlem_gym.llm.base import find_stop
from rlem_gym.llm.openai_http import OpenAICompatBackend


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


class FakeServer:
    """A real HTTP server in a thread; ``plan`` lists how to answer the next requests."""

    def __init__(self) -> None:
        self.plan: list[str] = []  # "ok" | "500" | "429" | "400" | "hang" | "badjson"; empty -> "ok"
        self.requests: list[dict] = []
        self.hang_s = 3.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                action = server.plan.pop(0) if server.plan else "ok"
                try:
                    if action == "hang":
                        time.sleep(server.hang_s)
                        action = "ok"
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
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def _complete(self, body: dict) -> dict:
                chat = self.path.endswith("/chat/completions")
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                text, finish, n = _reply(prompt, int(body.get("max_tokens", 16)), body.get("stop") or [])
                choice = {"index": 0, "finish_reason": finish}
                choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": n}
                return {"object": "chat.completion" if chat else "text_completion", "choices": [choice], "usage": usage}

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


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
    assert (out.prompt_tokens, out.completion_tokens, out.finish_reason) == (3, 4, "stop")
    req = server.requests[-1]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "tiny-model"
    assert req["body"]["messages"] == [{"role": "user", "content": "find red shoes"}]
    assert (req["body"]["max_tokens"], req["body"]["stop"], req["body"]["seed"]) == (10, ["###"], 3)


def test_length_and_stop_and_completions_endpoint(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatBackend(server.url, "m", endpoint="completions")
    out = llm.generate("a b c d e f", max_tokens=3)
    assert (out.text, out.finish_reason, out.completion_tokens) == ("echo a b", "length", 3)
    assert server.requests[-1]["path"] == "/v1/completions"
    assert server.requests[-1]["auth"] is None  # no key configured -> no header
    assert llm.generate("x y STOP z", max_tokens=9, stop=["STOP"]).text == "echo x y "


def test_response_prefix_is_appended_to_the_prompt(server, monkeypatch):
    """completions: a true prefill (prompt + prefix); chat: appended to the user message; no extra fields."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    raw = OpenAICompatBackend(server.url, "m", endpoint="completions")
    out = raw.generate("new input\n\n", max_tokens=9, response_prefix="Encouraged:\n")
    assert server.requests[-1]["body"]["prompt"] == "new input\n\nEncouraged:\n"
    assert out.text == "echo new input Encouraged:"  # the server's reply, prefix not added to it
    chat = OpenAICompatBackend(server.url, "m", endpoint="chat", system_prompt="sys")
    chat.generate("history\n", max_tokens=4, response_prefix="Action:")
    body = server.requests[-1]["body"]
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "history\nAction:"}]
    assert set(body) == {"model", "max_tokens", "temperature", "messages"}
    with pytest.raises(ValueError, match="max_tokens"):
        chat.generate("x", max_tokens=-1)


def test_overlapping_stops_cut_at_the_earliest(server, monkeypatch):
    """Client-side stops cut where the first match begins, whatever the order of the stop list."""
    assert find_stop("xabc", ["bc", "ab"]) == 1 and find_stop("xabc", ["ab", "bc"]) == 1
    assert find_stop("xabc", ["zz"]) is None and find_stop("abxab", ["ab"], 1) == 3
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatBackend(server.url, "m", endpoint="completions")
    # the server gets only the first 4 stops, so the overlapping pair is left to the client
    out = llm.generate("xabc", max_tokens=9, stop=["S1", "S2", "S3", "S4", "bc", "ab"])
    assert server.requests[-1]["body"]["stop"] == ["S1", "S2", "S3", "S4"]
    assert (out.text, out.finish_reason) == ("echo x", "stop")


def test_zero_max_tokens_sends_no_request(server, monkeypatch):
    """max_tokens=0 gives an empty "length" completion, as the local backends do, without asking the server."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatBackend(server.url, "m")
    out = llm.generate("hello there", max_tokens=0, stop=["x"])
    assert (out.text, out.completion_tokens, out.finish_reason) == ("", 0, "length")
    assert server.requests == []
    with pytest.raises(ValueError, match="max_tokens"):
        llm.generate("hello", max_tokens=-1)


def test_500_then_200_is_retried(server):
    server.plan = ["500", "429"]
    llm = OpenAICompatBackend(server.url, "m", max_retries=3, backoff=0.01)
    assert llm.generate("hello", max_tokens=5).text == "echo hello"
    assert len(server.requests) == 3


def test_persistent_500_raises_after_bounded_retries(server):
    server.plan = ["500"] * 10
    llm = OpenAICompatBackend(server.url, "m", max_retries=2, backoff=0.01)
    with pytest.raises(LLMError, match=r"3 attempt\(s\).*HTTP 500"):
        llm.generate("hello")
    assert len(server.requests) == 3


def test_client_error_is_not_retried(server):
    server.plan = ["400"]
    llm = OpenAICompatBackend(server.url, "m", max_retries=3, backoff=0.01)
    with pytest.raises(LLMError, match="HTTP 400"):
        llm.generate("hello")
    assert len(server.requests) == 1


def test_timeout_is_honoured_and_bounded(server):
    server.plan = ["hang"] * 10
    server.hang_s = 3.0
    llm = OpenAICompatBackend(server.url, "m", timeout=0.3, max_retries=1, backoff=0.05)
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
    llm = OpenAICompatBackend(server.url, "m", timeout=0.3, max_retries=2, backoff=0.01)
    assert llm.generate("ok then").text == "echo ok then"


def test_bad_json_and_refused_connection():
    srv = FakeServer()
    try:
        srv.plan = ["badjson"]
        with pytest.raises(LLMError, match="not JSON"):
            OpenAICompatBackend(srv.url, "m", max_retries=0).generate("hi")
    finally:
        srv.close()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(LLMError, match="connection error"):
        llm.generate("hi")


def test_bad_specs_and_arguments():
    with pytest.raises(ValueError, match="model"):
        make_llm("openai:http://127.0.0.1:8000/v1")
    with pytest.raises(ValueError, match="accepted forms"):
        make_llm("claude:whatever")
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatBackend("127.0.0.1:8000", "m")
    with pytest.raises(TypeError, match=r"spec must be a string or None, got \w*Path"):
        make_llm(Path("model.gguf"))


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
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()), "--model_alias", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(os.cpu_count() or 1)]
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
    llm = make_llm(f"openai:{llama_server}#smollm2", timeout=120, extra_body={"repeat_penalty": 1.0})
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
