"""Dev-goal probe of the advice rendering (WebShop dev goals, never test goals).

At every step of a frozen Rememberer (the study's settings: Qwen2.5-Coder-0.5B, constrained action
decoding), it records the action the constrained decoder executes and, from the same prompt, what
the model writes freely after the ``Encouraged:`` cue (its first line, and whether its first
Encouraged action is valid on the page). One JSON line per step.

    python -m rlem_gym.benchmarks.study.probes.advice_probe docs/study/probes/memory_after_00012 20 28 4 [random]

Arguments: a saved memory folder (or ``E0``), the first and last+1 ``train`` split goal index, the
steps per goal, and ``random`` for the official invented advice (``random_advice=True``). The
memory here is the one the first study run had after 12 training episodes with deterministic
advice (``docs/study/webshop-main-deterministic-advice``).
"""

import json
import sys

from rlem_gym.advice import parse_advice
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.agents.variants import parse_variant
from rlem_gym.benchmarks.build import Builder
from rlem_gym.benchmarks.study.probes import STUDY_DOCS
from rlem_gym.llm import make_llm

CONFIG = STUDY_DOCS / "webshop-main-deterministic-advice" / "config.json"


def main(argv: list[str]) -> None:
    mem_spec, first, last, steps = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    cfg = BenchConfig(**json.loads(CONFIG.read_text())["config"])
    build = Builder(cfg)
    cfg.random_advice = len(argv) > 4 and argv[4] == "random"
    llm = make_llm("qwen2.5-coder-0.5b:gguf")
    env = build.env({"split": "train"})
    for ti in range(first, last):
        memory = build.initial_memory(0) if mem_spec == "E0" else build.load_memory(mem_spec)
        agent = build.agent(parse_variant("rememberer"), llm, memory)
        agent.eval()
        obs, info = env.reset(seed=0, options={"task_index": ti})
        agent.reset(obs, info)
        for step in range(steps):
            action = agent.act(obs, info)
            st = agent.last_step
            row = {"goal": ti, "step": step, "constrained": action, "retrieved": st.retrieved_ids}
            if not action.startswith("search["):
                free = llm.generate(st.prompt, max_tokens=40, stop=["\n\n", "\n---"], response_prefix="Encouraged:\n")
                encouraged = [
                    line.action
                    for line in parse_advice("Encouraged:\n" + free.text, agent.adapter.extract_actions).encouraged
                ]
                valid = set(agent.adapter.available_actions(info))
                row.update(
                    free_first_line=free.text.strip().splitlines()[0] if free.text.strip() else "",
                    free_encouraged=encouraged[:1],
                    free_valid=bool(encouraged) and encouraged[0].split("[", 1)[-1].rstrip("]") in valid,
                )
            print(json.dumps(row), flush=True)
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                print(json.dumps({"goal": ti, "end": True, "reward": reward}), flush=True)
                break


if __name__ == "__main__":
    main(sys.argv[1:])
