"""The results-page step with another model: WikiHow dev tasks 0..N-1 (see order_probe.py), the
untrained Rememberer (wikihow:init), the study's settings (constrained decoding, official advice):
its action on the home page, then on the page that follows. One JSON line per task.

    python -m rlem_gym.benchmarks.study.probes.order_probe_15b qwen2.5-coder-1.5b:gguf official 5 > qwen15b_official.jsonl
"""

import json
import sys
import time

from rlem_gym.benchmarks.study.probes.order_probe import CONFIG, dev_tasks
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.agents.variants import parse_variant
from rlem_gym.benchmarks.build import Builder
from rlem_gym.llm import make_llm


def main(model: str, order: str, n: int) -> None:
    llm = make_llm(model)
    cfg = BenchConfig(**json.loads(CONFIG.read_text())["config"])
    build = Builder(cfg)
    for ti in range(n):
        tasks = dev_tasks()[ti : ti + 1]
        env = build.env({"task_set": tasks})
        agent = build.agent(parse_variant(f"rememberer[exemplar_order={order}]"), llm, build.initial_memory(0))
        agent.eval()
        obs, info = env.reset(seed=0, options={"task_index": 0})
        agent.reset(obs, info)
        t0 = time.time()
        home = agent.act(obs, info)
        obs, r0, terminated, truncated, info = env.step(home)
        agent.observe(home, r0, terminated, truncated, info)
        t1 = time.time()
        then = agent.act(obs, info)
        obs, r1, terminated, truncated, info = env.step(then)
        print(
            json.dumps(
                {
                    "model": model,
                    "order": order,
                    "task": tasks[0],
                    "home": home,
                    "r0": r0,
                    "results": then,
                    "r1": r1,
                    "raw1": agent.last_step.raw_output[:100],
                    "s": [round(t1 - t0, 1), round(time.time() - t1, 1)],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
