"""Agent-step benchmark: per-step latency of each LLM agent on fixed real episodes, and the study's projected hours.

Every (env, agent) pair plays the same test tasks (positions ``0..episodes-1`` of WebShop's
``test`` split and of WikiHow's ``microcanon70``), seeded, through the runner's ``run_episode``
(the one place that steps an env), with the agent's settings as the study runs them. The
Rememberer is tested, frozen, with a memory built first by ``--warm-epochs`` training epochs over
the study's training tasks (WebShop ``train[0:10]``, WikiHow ``train_S0``) driven by a stand-in
model that never generates (every action is the agent's counted fallback), so building it costs no
LLM time and is the same for every backend; ``--memory DIR`` loads a saved memory instead.

Per (env, agent) it reports the p50 and mean wall time of ``agent.act`` (retrieval + prompt
building + every LLM call of the step), the LLM's own share, prompt/completion tokens, the share
of prompt tokens served from the backend's KV prefix cache (``cached_tokens / prompt_tokens``),
the mean episode wall time and steps, and from those the projected wall time of the study's main
tables: per env, ``train_tasks x epochs`` Rememberer episodes plus ``test_tasks`` episodes for
each of the study's test agents (by default the Rememberer twice, for Rememberer and Rememberer
(A), then ReAct and static: the issue's "4 LLM agents"), at the measured mean episode cost.

With ``--tokenizer-only DIR`` no model is loaded: a stand-in LLM counts tokens with the tokenizer
in ``DIR`` (a HF tokenizer folder or a ``.gguf`` file), renders each prompt with its chat
template exactly as :class:`rlem_gym.llm.hf.HFBackend` does, and reports the reused-prefix share a
KV-reusing backend would get. That compares prompt layouts (e.g. ``--exemplar-order``) in seconds.

    # after: the study's settings (bounded ReAct history, bf16)
    python -m rlem_gym.benchmarks.perf.bench_step --llm qwen2.5-coder-0.5b:hf --llm-kwargs '{"dtype": "bfloat16"}' \\
        --react-history last --episodes 3 --out runs/bench_step/after.json
    # before: the previous defaults on the same episodes (full ReAct transcript, fp32)
    python -m rlem_gym.benchmarks.perf.bench_step --llm qwen2.5-coder-0.5b:hf \\
        --react-history full --episodes 3 --out runs/bench_step/before.json
    # prompt layout only, no model: the reused-prefix share of each exemplar order
    python -m rlem_gym.benchmarks.perf.bench_step --tokenizer-only /path/to/qwen.gguf --exemplar-order stable --episodes 10

``--react-history``, ``--exemplar-order``, ``--fallback`` and ``--action-decoding`` are passed to the agents only when
given (otherwise the agents' defaults apply); backend settings (dtype, threads, cache) go through
``--llm-kwargs``, so "before" and "after" run the same code on the same episodes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.perf.measure import machine_line
from rlem_gym.llm.base import LLM, Completion, chat_messages, common_prefix_len

#: the LLM agents the benchmark knows
AGENT_NAMES = ("static", "react", "rememberer")
#: env -> (gym id, training split kwargs and positions, test split kwargs); the study's splits
ENVS: dict[str, dict[str, Any]] = {
    "webshop": {
        "id": "rlem_gym/WebShop-v0",
        "env_kwargs": {"shown_results": 3},
        "train": ({"split": "train"}, range(10)),
        "test": {"split": "test"},
        "study_test_tasks": 100,
    },
    "wikihow": {
        "id": "rlem_gym/WikiHow-v0",
        "env_kwargs": {},
        "train": ({"task_set": "train_S0"}, None),
        "test": {"task_set": "microcanon70"},
        "study_test_tasks": 70,
    },
}
#: the study's test agents (the Rememberer counted twice: Rememberer and Rememberer (A))
STUDY_TEST_AGENTS = ("rememberer", "rememberer", "react", "static")


# --------------------------------------------------------------------------------------------
# LLM wrappers
# --------------------------------------------------------------------------------------------
class RecordingLLM(LLM):
    """Forwards to ``inner`` and keeps every :class:`Completion` it returns (for ``cached_tokens``)."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.name = inner.name
        self.context_length = inner.context_length
        self.completions: list[Completion] = []

    @property
    def supports_constraint(self) -> bool:  # a class attribute of LLM: __getattr__ would not forward it
        return bool(getattr(self.inner, "supports_constraint", False))

    def generate(self, prompt: str, **kwargs: Any) -> Completion:
        out = self.inner.generate(prompt, **kwargs)
        self.completions.append(out)
        return out

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # reset_cache, prompt_ids, constraint support, ...
        return getattr(self.__dict__["inner"], name)


class TokenizerLLM(LLM):
    """A stand-in LLM that never generates: it counts with a real tokenizer and models a prefix cache.

    Each call renders the prompt as :class:`rlem_gym.llm.hf.HFBackend` would (chat template when
    the tokenizer has one, the reply's ``response_prefix`` after it) and reports as
    ``cached_tokens`` the common token prefix with the previous call's prompt (capped at all but
    one token, as the backend feeds at least one). ``multi_cached`` keeps, per call, what a cache
    holding every earlier prompt of the episode would serve (the longest common prefix with any
    of them). The reply is empty, so agents fall back.

    Args:
        tokenizer: a HF tokenizer; ``None`` = no tokenizer (characters // 4, no cache model).
        context_length: the window agents fit their prompts to (Qwen2.5: 32768).
    """

    name = "tokenizer-only"

    def __init__(self, tokenizer: Any = None, context_length: int = 32768) -> None:
        self.tokenizer = tokenizer
        self.context_length = int(context_length)
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self._episode: list[list[int]] = []  # the prompts since the last reset_cache, in order
        self.multi_cached: list[int] = []

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            return max(1, len(text) // 4)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, prompt: str, response_prefix: str = "") -> list[int]:
        """The token ids a HF backend would feed for ``prompt`` (see :meth:`HFBackend.prompt_ids`)."""
        tok = self.tokenizer
        if tok is None:
            return list(range(self.count_tokens(prompt + response_prefix)))
        if self.chat:
            text = tok.apply_chat_template(chat_messages(prompt), tokenize=False, add_generation_prompt=True)
            return list(tok(text + response_prefix, add_special_tokens=False)["input_ids"])
        return list(tok(prompt + response_prefix, add_special_tokens=True)["input_ids"])

    def reset_cache(self) -> None:
        """Forget the modelled cache (the runner calls this at every episode start)."""
        self._episode = []

    def generate(self, prompt: str, *, response_prefix: str = "", **_: Any) -> Completion:
        ids = self.prompt_ids(prompt, response_prefix)
        cap = max(0, len(ids) - 1) if self.tokenizer is not None else 0
        shared = [common_prefix_len(earlier, ids) for earlier in self._episode]
        cached = min(shared[-1], cap) if shared else 0
        self.multi_cached.append(min(max(shared, default=0), cap))
        self._episode.append(ids)
        return Completion("", len(ids), 0, 0.0, "stop", cached_tokens=cached)


def load_tokenizer(path: str) -> Any:
    """A HF tokenizer from a folder or from the tokenizer embedded in a ``.gguf`` file."""
    from transformers import AutoTokenizer

    p = Path(path).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise SystemExit(f"--tokenizer-only: {p} is not a file")
        return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    if not p.is_dir():
        raise SystemExit(f"--tokenizer-only: {p} is neither a tokenizer folder nor a .gguf file")
    return AutoTokenizer.from_pretrained(str(p))


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
class TimedAgent:
    """Forwards everything to ``agent``; records the wall time of each ``act`` call and its LLM share."""

    def __init__(self, agent: Any) -> None:
        self.__dict__["agent"] = agent
        self.__dict__["act_s"] = []
        self.__dict__["llm_s"] = []

    def act(self, obs: str, info: dict[str, Any]) -> str:
        t0 = time.perf_counter()
        action = self.agent.act(obs, info)
        self.act_s.append(time.perf_counter() - t0)
        self.llm_s.append(float(self.agent.last_step.latency_s))  # every LLM call of the step (ReAct's thoughts too)
        return action

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["agent"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__dict__["agent"], name, value)


@dataclass
class PairResult:
    """What one (env, agent) pair measured over its episodes."""

    env: str
    agent: str
    act_s: list[float] = field(default_factory=list)
    llm_s: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)
    multi_cached_tokens: list[int] = field(default_factory=list)
    llm_calls: int = 0
    episode_s: list[float] = field(default_factory=list)
    episode_steps: list[int] = field(default_factory=list)
    successes: int = 0

    def summary(self) -> dict[str, Any]:
        """Medians, means and totals of this pair, rounded for the report."""

        def p50(xs: Sequence[float]) -> float:
            return round(statistics.median(xs), 4) if xs else float("nan")

        def mean(xs: Sequence[float]) -> float:
            return round(statistics.fmean(xs), 4) if xs else float("nan")

        prompt = sum(self.prompt_tokens)
        return {
            "env": self.env,
            "agent": self.agent,
            "steps": len(self.act_s),
            "episodes": len(self.episode_s),
            "successes": self.successes,
            "act_p50_s": p50(self.act_s),
            "act_mean_s": mean(self.act_s),
            "llm_p50_s": p50(self.llm_s),
            "llm_calls_per_step": round(self.llm_calls / len(self.act_s), 3) if self.act_s else float("nan"),
            "prompt_tokens_p50": p50(self.prompt_tokens),
            "prompt_tokens_max": max(self.prompt_tokens, default=0),
            "completion_tokens_p50": p50(self.completion_tokens),
            "cached_share": round(sum(self.cached_tokens) / prompt, 4) if prompt else float("nan"),
            # tokenizer-only: the share a cache of every earlier prompt of the episode would serve
            "multi_cached_share": (
                round(sum(self.multi_cached_tokens) / prompt, 4) if prompt and self.multi_cached_tokens else None
            ),
            "episode_mean_s": mean(self.episode_s),
            "steps_per_episode": mean(self.episode_steps),
        }


# --------------------------------------------------------------------------------------------
# episodes
# --------------------------------------------------------------------------------------------
def make_env(env_name: str, split_kwargs: dict[str, Any], max_steps: int) -> Any:
    """``gym.make`` of ``env_name`` on a split, capped at ``max_steps`` (as the runner builds it)."""
    import gymnasium as gym

    import rlem_gym  # noqa: F401  (registers the ids)

    spec = ENVS[env_name]
    kwargs = {"max_steps": max_steps, **spec["env_kwargs"], **split_kwargs}
    return gym.make(spec["id"], max_episode_steps=max_steps, **kwargs)


def play(env: Any, agent: Any, env_name: str, phase: str, position: int, seed: int) -> dict[str, Any]:
    """One episode of task ``position`` through the runner's ``run_episode``; returns its record."""
    from rlem_gym.benchmarks.episode import run_episode
    from rlem_gym.benchmarks.plan import Task, WorkItem

    item = WorkItem(
        phase,
        agent.name,
        0,
        Task(position, {"task_index": position}, f"{env_name}[{position}]"),
        episode_seed=seed + position,
    )
    return run_episode(env, agent, item, env_name=env_name)


def warm_memory(env_name: str, epochs: int, max_steps: int, seed: int, memory_dir: str | None) -> Any:
    """The Rememberer's test memory: loaded from ``memory_dir``, or trained over the study's
    training tasks for ``epochs`` epochs by a stand-in model (every action a counted fallback)."""
    from rlem_gym.agents import get_adapter, make_agent

    adapter = get_adapter(env_name)
    if memory_dir:
        from rlem_gym.memory import ExperienceMemory

        return ExperienceMemory.load(memory_dir, adapter.make_matcher())
    agent = make_agent("rememberer", TokenizerLLM(None), env_name, seed=seed).train()
    split_kwargs, positions = ENVS[env_name]["train"]
    env = make_env(env_name, split_kwargs, max_steps)
    try:
        positions = list(positions if positions is not None else range(env.unwrapped.num_tasks))
        for epoch in range(epochs):
            for pos in positions:
                play(env, agent, env_name, "train", pos, seed + 1000 * epoch)
    finally:
        env.close()
    return agent.memory


def agent_kwargs(name: str, args: argparse.Namespace, memory: Any) -> dict[str, Any]:
    """The agent's settings as the study runs them; the newer settings only when given."""
    kw: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": 0.0}
    if name == "rememberer":
        kw["memory"] = memory
        if args.exemplar_order is not None:
            kw["exemplar_order"] = args.exemplar_order
    if name == "react" and args.react_history is not None:
        kw["history"] = args.react_history
    if args.fallback is not None:
        kw["fallback"] = args.fallback
    if args.action_decoding is not None:
        kw["action_decoding"] = args.action_decoding
    return kw


def measure_pair(env_name: str, name: str, llm: LLM, args: argparse.Namespace, memory: Any) -> PairResult:
    """Play the fixed test episodes of ``name`` on ``env_name``; collect per-step costs."""
    from rlem_gym.agents import make_agent

    recorder = RecordingLLM(llm)
    agent = TimedAgent(make_agent(name, recorder, env_name, **agent_kwargs(name, args, memory)).eval())
    res = PairResult(env_name, name)
    env = make_env(env_name, ENVS[env_name]["test"], args.max_steps)
    try:
        for pos in range(args.episodes):
            n_before = len(agent.act_s)
            calls_before = len(recorder.completions)
            multi = getattr(llm, "multi_cached", None)  # the tokenizer-only stand-in's per-call counts
            multi_before = len(multi) if multi is not None else 0
            record = play(env, agent, env_name, "test", pos, args.seed)
            res.episode_s.append(float(record["wall_s"]))
            res.episode_steps.append(int(record["steps"]))
            res.successes += int(bool(record["success"]))
            res.act_s += agent.act_s[n_before:]
            new = recorder.completions[calls_before:]
            res.llm_calls += len(new)
            res.prompt_tokens += [c.prompt_tokens for c in new]
            res.completion_tokens += [c.completion_tokens for c in new]
            res.cached_tokens += [c.cached_tokens for c in new]
            if multi is not None:
                res.multi_cached_tokens += multi[multi_before:]
            res.llm_s += agent.llm_s[n_before:]
            if args.verbose:
                print(
                    f"  {env_name}/{name} task {pos}: {record['steps']} steps, {record['wall_s']:.1f} s, "
                    f"success={record['success']}",
                    file=sys.stderr,
                )
    finally:
        env.close()
    return res


# --------------------------------------------------------------------------------------------
# projection
# --------------------------------------------------------------------------------------------
def study_episodes(env_name: str, epochs: int, test_agents: Sequence[str]) -> dict[str, int]:
    """Episodes per agent kind in the study's main table of ``env_name`` (training counted on the Rememberer)."""
    train_kwargs, positions = ENVS[env_name]["train"]
    n_train = len(positions) if positions is not None else 10  # train_S0 holds 10 canonical tasks
    counts: dict[str, int] = {"rememberer": n_train * epochs}
    for name in test_agents:
        counts[name] = counts.get(name, 0) + int(ENVS[env_name]["study_test_tasks"])
    return counts


def project_hours(summaries: list[dict[str, Any]], epochs: int, test_agents: Sequence[str]) -> dict[str, Any]:
    """Projected wall hours of the study per env (and in total), at the measured mean episode cost."""
    cost = {(s["env"], s["agent"]): s["episode_mean_s"] for s in summaries}
    out: dict[str, Any] = {}
    total = 0.0
    for env_name in sorted({s["env"] for s in summaries}):
        counts = study_episodes(env_name, epochs, test_agents)
        missing = [a for a in counts if (env_name, a) not in cost]
        if missing:
            out[env_name] = {"episodes": counts, "hours": None, "missing": missing}
            continue
        hours = sum(n * cost[(env_name, a)] for a, n in counts.items()) / 3600
        out[env_name] = {"episodes": counts, "hours": round(hours, 2)}
        total += hours
    out["total_hours"] = round(total, 2) if all(v.get("hours") is not None for v in out.values()) else None
    return out


def table(summaries: list[dict[str, Any]]) -> str:
    """A markdown table of the per-pair summaries."""
    cols = (
        "env",
        "agent",
        "steps",
        "act_p50_s",
        "act_mean_s",
        "llm_p50_s",
        "llm_calls_per_step",
        "prompt_tokens_p50",
        "prompt_tokens_max",
        "completion_tokens_p50",
        "cached_share",
        "multi_cached_share",
        "episode_mean_s",
        "steps_per_episode",
        "successes",
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in summaries:
        lines.append("| " + " | ".join(str(s[c]) for c in cols) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def _csv(text: str, known: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in known]
    if bad or not items:
        raise SystemExit(f"--{what}: unknown {bad or 'empty list'}; use a comma-separated subset of {','.join(known)}")
    return items


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--llm", default=None, help="make_llm spec (default: the shipped SmolLM2 through HF)")
    p.add_argument("--llm-kwargs", default="{}", help='backend keywords as JSON, e.g. \'{"dtype": "bfloat16"}\'')
    p.add_argument(
        "--tokenizer-only",
        default=None,
        metavar="PATH",
        help="no model: count with this tokenizer (folder or .gguf) and model the prefix cache",
    )
    p.add_argument("--envs", default="webshop,wikihow", help="comma-separated: webshop,wikihow")
    p.add_argument("--agents", default="static,react,rememberer", help="comma-separated: static,react,rememberer")
    p.add_argument("--episodes", type=int, default=3, help="test tasks per env and agent (positions 0..N-1)")
    p.add_argument("--max-steps", type=int, default=15, help="step cap per episode (the study's 15)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens generated per call (the study's 128)")
    p.add_argument(
        "--react-history",
        default=None,
        choices=("last", "full"),
        help="ReAct history setting (default: the agent's default)",
    )
    p.add_argument(
        "--exemplar-order",
        default=None,
        choices=("official", "similarity", "stable"),
        help="Rememberer exemplar order (default: the agent's default)",
    )
    p.add_argument(
        "--fallback",
        default=None,
        choices=("first_valid", "random_valid", "noop"),
        help="fallback policy of the tested agents (default: the agents' own); with --tokenizer-only "
        "every action is a fallback, so random_valid gives more varied episodes",
    )
    p.add_argument(
        "--action-decoding",
        default=None,
        choices=("free", "constrained"),
        help="action decoding of the tested agents (default: the agents' own, free)",
    )
    p.add_argument("--warm-epochs", type=int, default=3, help="stand-in training epochs that build the test memory")
    p.add_argument("--memory", default=None, metavar="DIR", help="test the Rememberer with this saved memory instead")
    p.add_argument("--seed", type=int, default=0, help="base seed: episode i is reset with seed + i")
    p.add_argument("--study-epochs", type=int, default=3, help="training epochs in the projected study")
    p.add_argument(
        "--study-test-agents",
        default=",".join(STUDY_TEST_AGENTS),
        help="the study's test agents, comma-separated (repeats allowed)",
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--verbose", action="store_true", help="one line per episode on stderr")
    args = p.parse_args(argv)
    args.env_list = _csv(args.envs, tuple(ENVS), "envs")
    args.agent_list = _csv(args.agents, AGENT_NAMES, "agents")
    args.study_agents = [t.strip() for t in args.study_test_agents.split(",") if t.strip()]
    _csv(args.study_test_agents, AGENT_NAMES, "study-test-agents")
    try:
        args.llm_kw = json.loads(args.llm_kwargs)
    except json.JSONDecodeError as exc:
        raise SystemExit(f'--llm-kwargs is not valid JSON ({exc.msg}): pass e.g. \'{{"dtype": "bfloat16"}}\'')
    if not isinstance(args.llm_kw, dict):
        raise SystemExit('--llm-kwargs must be a JSON object, e.g. \'{"dtype": "bfloat16"}\'')
    if args.episodes < 1 or args.max_steps < 1:
        raise SystemExit("--episodes and --max-steps must be >= 1")
    return args


def build_llm(args: argparse.Namespace) -> tuple[LLM, float]:
    """The LLM under test and its load time in seconds."""
    t0 = time.perf_counter()
    if args.tokenizer_only:
        llm: LLM = TokenizerLLM(load_tokenizer(args.tokenizer_only))
    else:
        from rlem_gym.llm import make_llm

        llm = make_llm(args.llm, **args.llm_kw)
    return llm, time.perf_counter() - t0


def main(
    argv: Sequence[str] | None = None, *, llm_factory: Callable[[argparse.Namespace], tuple[LLM, float]] = build_llm
) -> dict[str, Any]:
    """Run the benchmark; prints the table and projection, writes ``--out``; returns the result dict."""
    args = parse_args(argv)
    llm, load_s = llm_factory(args)
    summaries: list[dict[str, Any]] = []
    try:
        for env_name in args.env_list:
            memory = None
            if "rememberer" in args.agent_list:
                memory = warm_memory(env_name, args.warm_epochs, args.max_steps, args.seed, args.memory)
            for name in args.agent_list:
                summaries.append(measure_pair(env_name, name, llm, args, memory).summary())
                print(table(summaries[-1:]).splitlines()[-1], file=sys.stderr)
    finally:
        llm.close()
    result = {
        "command": "python -m rlem_gym.benchmarks.perf.bench_step " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_line(),
        "llm": getattr(llm, "name", str(args.llm)),
        "llm_kwargs": args.llm_kw,
        "load_s": round(load_s, 2),
        "settings": {
            k: getattr(args, k)
            for k in (
                "episodes",
                "max_steps",
                "max_tokens",
                "react_history",
                "exemplar_order",
                "fallback",
                "action_decoding",
                "warm_epochs",
                "memory",
                "seed",
            )
        },
        "pairs": summaries,
        "projection": project_hours(summaries, args.study_epochs, args.study_agents),
    }
    print(table(summaries))
    print(json.dumps(result["projection"], indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
