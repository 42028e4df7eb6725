"""Named benchmark presets: instances of :class:`rlem_gym.benchmarks.config.BenchConfig`.

- ``demo``: the README's main job. WebShop small catalog, Qwen2.5-Coder-0.5B-Instruct (the
  ``qwen-0-5b`` extra; llama.cpp when installed, else HF transformers) with constrained action
  decoding (its time: benchmarks/perf/RESULTS.md, "Benchmark runner"): the Rememberer starts from the official initial
  pool E0 and trains 2 epochs on 3 synthetic goals (so the learning curve has two points), then the
  trained Rememberer, the untrained one (E0 only), ReAct and the static-exemplar agent (E0's
  records as exemplars) play the same 3 test goals (at most 6 steps each, 48 tokens per reply),
  beside the LLM-free heuristic (floor) and oracle (ceiling). It shows the whole pipeline end to
  end with non-zero scores. It does NOT show which agent is better: 3 goals give intervals far too
  wide for that; the study (docs/study/README.md) does.
- ``paper-webshop``: the paper's WebShop protocol: 15 steps, top-2 retrieval, capacities 500/20,
  the Rememberer starting from the official initial pool E0 (``--init-memory webshop:E0``; the
  static agent's exemplars are the same pool), 3 epochs on 10 training goals (human goals
  S0 = [500, 510)), 100 test goals (human goals [0, 100)). These are human goals on the full 1.18M-product catalog: point the env at WebShop's
  full data (``--env-kwargs '{"data_dir": "/path/to/webshop/data"}'``) and use a capable model
  (e.g. ``--llm openai:http://host:8000/v1#model``).
- ``paper-wikihow``: the paper's WikiHow protocol: 15 steps, top-2, capacities 500/20, the
  official initial pool (``--init-memory wikihow:init``), 3 epochs on the 10 canonical tasks of S0,
  tested on the 70 micro-canonical tasks.
"""

from __future__ import annotations

from rlem_gym.benchmarks.config import BenchConfig

#: the README demo (see the module docstring for what it does and does not show)
DEMO = BenchConfig(
    env="webshop",
    agents=("rememberer", "rememberer@untrained", "react", "static", "heuristic", "oracle"),
    llm="qwen2.5-coder-0.5b",
    action_decoding="constrained",
    random_advice=False,  # the deterministic advice its committed outputs (docs/demo) were made with
    init_memory="webshop:E0",
    train_split="train[0:3]",
    test_split="test[0:3]",
    epochs=2,
    seeds=(0,),
    max_steps=6,
    k=2,
    capacity=500,
    action_capacity=20,
    max_tokens=48,
    shown_results=3,
    out="runs/demo",
)

#: the paper's protocol, common to both envs (Zhang et al. 2023, Sec. 4 / spec "Protocol"): 15 steps,
#: top-2 retrieval, capacities 500/20, 3 epochs, 3 seeds, full-episode returns averaged into Q, temperature 0.1
_PAPER_PROTOCOL = BenchConfig(
    agents=("rememberer", "react", "static"),
    epochs=3,
    seeds=(0, 1, 2),
    max_steps=15,
    k=2,
    capacity=500,
    action_capacity=20,
    n_step=None,
    gamma=1.0,
    update_mode="mean",
    temperature=0.1,  # the paper sampled text-davinci-003 at 0.1; episodes are seeded
    max_tokens=128,
    shown_results=3,
)

#: the paper's WebShop setting: train on human goals S0 = [500, 510), test on human goals [0, 100)
PAPER_WEBSHOP = _PAPER_PROTOCOL.replace(
    env="webshop",
    train_split="paper_train_S0",
    test_split="paper_test",
    env_kwargs={"goals": "human"},
    init_memory="webshop:E0",
)

#: the paper's WikiHow setting: train on S0 (10 canonical tasks), test on the 70 micro-canonical tasks
PAPER_WIKIHOW = _PAPER_PROTOCOL.replace(
    env="wikihow",
    train_split="train_S0",
    test_split="microcanon70",
    init_memory="wikihow:init",
)

PRESETS: dict[str, BenchConfig] = {
    "demo": DEMO,
    "paper-webshop": PAPER_WEBSHOP,
    "paper-wikihow": PAPER_WIKIHOW,
}


def get_preset(name: str) -> BenchConfig:
    """A copy of preset ``name``; raises ValueError naming the presets that exist."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name].replace()
