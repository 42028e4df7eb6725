"""Dev-task probe of the exemplar order (WikiHow dev tasks, never test tasks).

The untrained Rememberer (the initial pool ``wikihow:init``, the study's settings: Qwen2.5-Coder-0.5B,
constrained action decoding, official advice) plays the first ``STEPS`` steps of each dev task, once
with each exemplar order. Dev tasks are the canonical tasks in neither ``microcanon70`` (the test
set) nor ``train_S0`` / ``train_S1`` (the training sets). One JSON line per step and per episode end.

    python -m rlem_gym.benchmarks.study.probes.order_probe ORDER FIRST LAST STEPS > out.jsonl

ORDER: ``official`` (most similar exemplar last, next to the new input, numbered by rank) or
``similarity`` (most similar first); FIRST, LAST: a slice of the dev task list; STEPS: steps per task.
"""

import json
import sys

from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.agents.variants import parse_variant
from rlem_gym.benchmarks.build import Builder
from rlem_gym.benchmarks.study.probes import STUDY_DOCS
from rlem_gym.envs.wikihow.tasks import task_set
from rlem_gym.llm import make_llm

CONFIG = STUDY_DOCS / "wikihow-main-similarity-first" / "config.json"


def dev_tasks() -> list[str]:
    """Canonical task ids outside the test set and both training sets, in canonical order."""
    held = {t.task_id for name in ("microcanon70", "train_S0", "train_S1") for t in task_set(name)}
    return [t.task_id for t in task_set("canonical178") if t.task_id not in held]


def main(argv: list[str]) -> None:
    order, first, last, steps = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    cfg = BenchConfig(**json.loads(CONFIG.read_text())["config"])
    build = Builder(cfg)
    llm = make_llm("qwen2.5-coder-0.5b:gguf")
    tasks = dev_tasks()[first:last]
    env = build.env({"task_set": tasks})
    for ti, task_id in enumerate(tasks):
        agent = build.agent(parse_variant(f"rememberer[exemplar_order={order}]"), llm, build.initial_memory(0))
        agent.eval()
        obs, info = env.reset(seed=0, options={"task_index": ti})
        agent.reset(obs, info)
        total = 0.0
        for step in range(steps):
            action = agent.act(obs, info)
            st = agent.last_step
            page = info.get("page")
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            print(
                json.dumps(
                    {
                        "order": order,
                        "task": task_id,
                        "step": step,
                        "page": page,
                        "action": action,
                        "reward": reward,
                        "retrieved": st.retrieved_ids,
                        "raw": st.raw_output[:120],
                    }
                ),
                flush=True,
            )
            agent.observe(action, reward, terminated, truncated, info)
            if terminated or truncated:
                break
        print(
            json.dumps(
                {
                    "order": order,
                    "task": task_id,
                    "end": True,
                    "return": total,
                    "subgoals_done": info.get("subgoals_done"),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
