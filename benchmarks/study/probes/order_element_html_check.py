"""Does showing the element HTML in the advice lines (as the official WikiHow prompt does) change the
0.5B model's reply on the results page? WikiHow dev tasks 0-2 (see order_probe.py), untrained
Rememberer (wikihow:init), official exemplar order, free decoding, deterministic advice; the prompt
is ours, then the same prompt with the element HTML added to both exemplars' advice lines and to
the last action. Prints the first 120 characters of each reply (output: element_html_check.txt).

    python -m rlem_gym.benchmarks.study.probes.order_element_html_check
"""

import json
import re

from rlem_gym.benchmarks.study.probes.order_probe import CONFIG, dev_tasks
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.agents.variants import parse_variant
from rlem_gym.benchmarks.build import Builder
from rlem_gym.llm import make_llm
from rlem_gym.llm.base import LLM, Completion


class Recorder(LLM):
    """Keeps the prompt; replies nothing useful (only the prompt is wanted)."""

    name = "recorder"
    context_length = 32768

    def __init__(self):
        self.prompts = []

    def count_tokens(self, text):
        return max(1, len(text) // 4)

    def generate(self, prompt, *, max_tokens=128, stop=None, temperature=0.0, seed=None, response_prefix="", **kw):
        self.prompts.append(prompt)
        return Completion("x", 10, 10, 0.0, "stop")


SEARCH_BUTTON = '<img class="search button" alt="Search" id="2" clickable="true">'


def with_elements(prompt: str) -> str:
    prompt = prompt.replace(
        "CLICK(3) -> 2.0\n", 'CLICK(3) -> 2.0 <div id="3" clickable="true">How to Do Ruby Rose Hair</div>\n'
    )
    prompt = prompt.replace("INPUT(2, hide gauges) -> 2.0\n", f"INPUT(2, hide gauges) -> 2.0 {SEARCH_BUTTON}\n")
    return re.sub(
        r"Last 5 Actions:\nINPUT\(2, ([^)]*)\)\n",
        lambda m: f"Last 5 Actions:\nINPUT(2, {m.group(1)}) {SEARCH_BUTTON}\n",
        prompt,
    )


def main() -> None:
    llm = make_llm("qwen2.5-coder-0.5b:gguf")
    cfg = BenchConfig(**json.loads(CONFIG.read_text())["config"])
    build = Builder(cfg)
    cfg.action_decoding, cfg.random_advice, cfg.exemplar_order = "free", False, "official"
    for ti in range(3):
        tasks = dev_tasks()[ti : ti + 1]
        env = build.env({"task_set": tasks})
        rec = Recorder()
        agent = build.agent(parse_variant("rememberer"), rec, build.initial_memory(0))
        agent.eval()
        obs, info = env.reset(seed=0, options={"task_index": 0})
        agent.reset(obs, info)
        query = tasks[0].split("-article_")[1].split("-")[0]
        action = f"INPUT(2, {query})"
        obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(action, reward, terminated, truncated, info)
        agent.act(obs, info)
        prompt = rec.prompts[-1]
        for name, text in (("ours", prompt), ("official-detail", with_elements(prompt))):
            out = llm.generate(text, max_tokens=40, stop=["\n\n"], response_prefix="Encouraged:\n")
            print(ti, name, repr(out.text[:120]), flush=True)


if __name__ == "__main__":
    main()
