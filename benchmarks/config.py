"""The benchmark configuration: one dataclass whose field docstrings are the CLI's ``--help``.

``rlem-gym bench`` builds its arguments from :class:`BenchConfig` (one ``--flag`` per field, the
docstring under the field as its help text), and the presets in
:mod:`rlem_gym.benchmarks.presets` are instances of the same class. A run folder's
``config.json`` holds ``BenchConfig.to_dict()`` (every setting, the model resolved to its spec) and
``config_version``; :meth:`BenchConfig.from_stored` reads it back. A ``config.json`` written before
``config_version`` existed is read with the defaults of its time (:data:`LEGACY_DEFAULTS`), so an old
run resumes, re-renders and restores with the settings it was made with.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import Any

#: env short names the benchmark knows -> registered Gymnasium id
ENV_IDS = {"webshop": "rlem_gym/WebShop-v0", "wikihow": "rlem_gym/WikiHow-v0", "textworld": "rlem_gym/TextWorld-v0"}

#: the ``config_version`` a run's config.json is written with (absent = 1)
CONFIG_VERSION = 2
#: what a setting meant in a version-1 config.json that lacks it (a field added later, with a default
#: other than the behaviour before it), or that holds the old default: ``llm`` None was SmolLM2 on HF,
#: decoding was free, the advice deterministic, and the most similar exemplar came first
LEGACY_DEFAULTS: dict[str, Any] = {
    "llm": "smollm2",
    "action_decoding": "free",
    "random_advice": False,
    "exemplar_order": "similarity",
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message says what to pass instead."""


@dataclass
class BenchConfig:
    """Everything a benchmark run needs: env, splits, agents, model, memory and run settings."""

    env: str = "webshop"
    """Environment: webshop, wikihow or textworld (the textworld extra)."""

    agents: tuple[str, ...] = ("rememberer", "react", "static")
    """Agents to compare, comma-separated: rememberer, react, static, heuristic, oracle, random, each
    optionally a variant name[key=value,...] and, for the Rememberer, @untrained (tested with its
    initial memory, no training), e.g. rememberer,rememberer@untrained,rememberer[discouraged=false],
    rememberer[n_step=1],static[exemplars=handwritten],heuristic,oracle (rlem_gym.agents.variants)."""

    llm: str | None = None
    """LLM spec shared by every agent: a zoo name from `rlem-gym models` (qwen2.5-coder-0.5b,
    qwen2.5-coder-1.5b, smollm2-135m; :gguf = llama.cpp, :hf = transformers), hf:<id or
    path>[#gguf_file], gguf:<path> (llama.cpp) or openai:<base_url>#<model>; several, comma-separated,
    run a model sweep. Default: the best installed zoo model that can act (qwen2.5-coder-0.5b:gguf
    when the qwen-0-5b and llamacpp extras are installed), written to config.json as its spec."""

    llm_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the LLM backend, as JSON, passed as make_llm(llm, **kwargs), e.g.
    '{"dtype": "bfloat16", "num_threads": 2}' (HF) or '{"n_threads": 2}' (llama.cpp)."""

    action_decoding: str = "constrained"
    """How LLM agents write their action: free (parse the reply, counted fallback when it holds no
    valid action) or constrained (the action slot is decoded under the page's valid actions:
    grammar / token mask, so every action is valid; reasons and thoughts stay free text). A
    backend that cannot constrain (a server without grammar support) decodes freely, with a warning."""

    train_split: str = "train"
    """Training tasks of the Rememberer: a split name the env knows, optionally sliced, e.g. train,
    train[0:10], or goals:500-510 (WebShop global goal indices) / tasks:S0 (WikiHow task list)."""

    test_split: str = "test"
    """Test tasks every agent is evaluated on, same syntax as --train-split, e.g. test[0:100]."""

    epochs: int = 3
    """Training epochs of the Rememberer over the training tasks (0 = no training)."""

    seeds: tuple[int, ...] = (0,)
    """Base seeds, comma-separated; each seed is a full train+test replicate. Episode i of a phase
    is reset with seed base_seed + i."""

    max_steps: int = 15
    """Step cap per episode (the paper uses 15); TimeLimit truncates there."""

    k: int = 2
    """Exemplars retrieved from memory per step (top-k; the paper uses 2)."""

    capacity: int = 500
    """Memory capacity in records (item capacity; 500 in the paper)."""

    action_capacity: int = 20
    """Actions kept per memory record (20 in the paper)."""

    n_step: int | None = None
    """Q-learning target: None = full Monte-Carlo return (the paper's default), N = N-step bootstrap."""

    gamma: float = 1.0
    """Discount factor of the Q-learning targets."""

    update_mode: str = "mean"
    """Q update: mean (alpha = 1/visits, the paper) or const (alpha = --lr)."""

    lr: float = 0.1
    """Learning rate of the const update mode."""

    double_q: bool = False
    """Use double Q-learning (two memories) instead of one table."""

    discouraged: bool = True
    """Show the Discouraged part of the action advice (the paper's ablation switch)."""

    random_advice: bool = True
    """The official code's advice rendering (the study found it necessary): a retrieved record with no
    positive Q shows a random valid Encouraged action, one with no Q <= 0 a random Discouraged one.
    --no-random-advice shows only the record's own actions (deterministic)."""

    exemplar_order: str = "official"
    """The Rememberer's exemplar order in the prompt: official (the official code's: the most
    similar exemplar last, next to the new input, numbered by its rank), similarity (most similar
    first; this project's order before 2026-11-30) or stable (by memory record id)."""

    react_history: str = "last"
    """ReAct's prompt history: last (the first and the current page in full, earlier steps as their
    actions only, as the Rememberer's input shows them; bounds the prompt) or full (every page and
    thought of the episode, the original ReAct transcript)."""

    init_memory: str | None = None
    """The Rememberer's initial memory (Rememberer (A)): a shipped pool id (webshop:E0, webshop:E1,
    webshop:E2, wikihow:init, wikihow:annotated, ...), an official pool YAML file, or a memory saved
    by rlem-gym. With a pool, the static agent's fixed exemplars are that pool's records (the study
    setting; static[exemplars=handwritten] keeps the hand-written ones). Default: empty memory."""

    temperature: float = 0.0
    """Sampling temperature of every LLM call (0 = greedy, deterministic)."""

    max_tokens: int = 128
    """Maximum tokens generated per LLM call."""

    shown_results: int = 3
    """WebShop: products shown per results page (3 in the ReAct/Rememberer setting)."""

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for gym.make, as JSON, e.g. '{"observation_mode": "text"}'."""

    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments per agent, as JSON: '{"rememberer": {...}, "react": {...}}'."""

    workers: int = 1
    """Local processes for the test phase (training stays sequential)."""

    ray: str | None = None
    """Run test episodes as Ray tasks: 'local' starts ray.init() here, anything else is the address
    of an existing cluster (e.g. ray://host:10001 or auto)."""

    ray_workers: int = 2
    """Number of Ray workers (each loads the LLM once, unless the LLM is an openai: server)."""

    out: str = ""
    """Run folder; default runs/<env>-<agents>-<model>-s<seeds>-<config hash>, so rerunning the same
    command resumes it (finished episodes are skipped). The start time is recorded in config.json."""

    bootstrap: int = 2000
    """Bootstrap resamples for the 95% confidence intervals (seeded)."""

    reference: str | None = None
    """The agent every other row is compared with, goal by goal (paired bootstrap CI of the
    difference in score and SR). Default: the trained Rememberer (plain rememberer, else the first
    trained variant), else the first agent."""

    progress: bool = True
    """Show tqdm progress bars."""

    def __post_init__(self) -> None:
        self.agents = tuple(self.agents)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.env_kwargs = dict(self.env_kwargs or {})
        self.agent_kwargs = dict(self.agent_kwargs or {})
        self.llm_kwargs = dict(self.llm_kwargs or {})

    def validate(self) -> "BenchConfig":
        """Raise :class:`ConfigError` (one line, what to do) on an invalid value; return self."""
        if self.env not in ENV_IDS:
            raise ConfigError(f"unknown env {self.env!r}: use one of {', '.join(ENV_IDS)}")
        if not self.agents:
            raise ConfigError("no agents given: use e.g. --agents rememberer,react,static")
        from rlem_gym.agents.variants import VariantError, parse_agent_list

        try:  # canonical labels, so two spellings of one variant are one row (and one run folder)
            variants = tuple(parse_agent_list(self.agents))
            self.agents = tuple(v.label for v in variants)
            self.__dict__["_variants"] = (self.agents, variants)
        except VariantError as exc:
            raise ConfigError(f"--agents: {exc}") from None
        self._check_pools()
        if self.reference is not None:
            from rlem_gym.agents.variants import reference_label

            try:
                self.reference = reference_label(self.agents, self.reference)
            except VariantError as exc:
                raise ConfigError(f"--reference: {exc}") from None
        if not self.seeds:
            raise ConfigError("no seeds given: use e.g. --seeds 0,1,2")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds listed twice in {self.seeds}")
        checks = [
            (self.epochs >= 0, "--epochs must be >= 0"),
            (self.max_steps >= 1, "--max-steps must be >= 1"),
            (self.k >= 0, "--k must be >= 0"),
            (self.capacity >= 1, "--capacity must be >= 1"),
            (self.action_capacity >= 1, "--action-capacity must be >= 1"),
            (self.n_step is None or self.n_step >= 1, "--n-step must be >= 1 or None"),
            (0.0 <= self.gamma <= 1.0, "--gamma must be in [0, 1]"),
            (self.update_mode in ("mean", "const"), "--update-mode must be mean or const"),
            (self.temperature >= 0.0, "--temperature must be >= 0"),
            (self.max_tokens >= 1, "--max-tokens must be >= 1"),
            (self.shown_results >= 1, "--shown-results must be >= 1"),
            (self.workers >= 1, "--workers must be >= 1"),
            (self.ray_workers >= 1, "--ray-workers must be >= 1"),
            (self.bootstrap >= 100, "--bootstrap must be >= 100"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.ray is not None and self.workers > 1:
            raise ConfigError("use either --workers N or --ray, not both")
        from rlem_gym.prompts import EXEMPLAR_ORDERS, check_exemplar_order

        if self.exemplar_order not in EXEMPLAR_ORDERS:
            raise ConfigError(
                f"--exemplar-order must be one of {', '.join(EXEMPLAR_ORDERS)}, got {self.exemplar_order!r}"
            )
        for v in self.variants:
            if v.get("exemplar_order") is not None:
                try:
                    check_exemplar_order(str(v.get("exemplar_order")))
                except ValueError as exc:
                    raise ConfigError(f"{v.label}: {exc}") from None
        from rlem_gym.agents.react import REACT_HISTORIES

        if self.react_history not in REACT_HISTORIES:
            raise ConfigError(
                f"--react-history must be one of {', '.join(REACT_HISTORIES)}, got {self.react_history!r}"
            )
        from rlem_gym.agents.llm_agent import ACTION_DECODINGS

        if self.action_decoding not in ACTION_DECODINGS:
            raise ConfigError(
                f"--action-decoding must be one of {', '.join(ACTION_DECODINGS)}, got {self.action_decoding!r}"
            )
        if not isinstance(self.llm_kwargs, dict) or not all(isinstance(k, str) for k in self.llm_kwargs):
            raise ConfigError('--llm-kwargs must be a JSON object of keyword arguments, e.g. \'{"dtype": "bfloat16"}\'')
        if not isinstance(self.agent_kwargs, dict) or any(not isinstance(v, dict) for v in self.agent_kwargs.values()):
            raise ConfigError('--agent-kwargs must map agent names to objects, e.g. \'{"react": {"x": 1}}\'')
        return self

    def _check_pools(self) -> None:
        """Fail fast on an --init-memory or a variant's init/exemplars that cannot be read."""
        from pathlib import Path

        from rlem_gym.agents.pools import POOLS, is_pool_spec, resolve_pool

        specs = [("--init-memory", self.init_memory)] if self.init_memory else []
        for v in self.variants:
            if v.get("exemplars") not in (None, "pool", "handwritten"):
                raise ConfigError(f"{v.label}: exemplars must be pool or handwritten")
            if v.get("init") is not None:
                specs.append((v.label, str(v.get("init"))))
        for where, spec in specs:
            if is_pool_spec(spec):
                try:
                    resolve_pool(spec, self.env)
                except ValueError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
            elif not Path(spec).exists():
                raise ConfigError(
                    f"{where}: {spec} is neither a shipped pool ({', '.join(POOLS)}), a pool YAML file nor a saved memory"
                )

    @property
    def variants(self) -> list:
        """The agents as :class:`~rlem_gym.agents.variants.AgentVariant` objects, in order: parsed
        once (in :meth:`validate`, or on first use) and kept while :attr:`agents` stays the same."""
        parsed = self.__dict__.get("_variants")
        if parsed is None or parsed[0] != self.agents:
            from rlem_gym.agents.variants import parse_agent_list

            parsed = (self.agents, tuple(parse_agent_list(self.agents)))
            self.__dict__["_variants"] = parsed
        return list(parsed[1])

    @property
    def trained_variants(self) -> list:
        """The Rememberer variants with a training phase (not ``@untrained``), in order."""
        return [v for v in self.variants if v.trains]

    @property
    def env_id(self) -> str:
        """The registered Gymnasium id of :attr:`env`."""
        return ENV_IDS[self.env]

    @property
    def model_label(self) -> str:
        """The model as shown in results, plots and config.json: :attr:`llm`, or what the default is
        ("none" when every agent is LLM-free: heuristic, oracle, random)."""
        from rlem_gym.agents import AGENTS

        if not any(getattr(AGENTS.get(v.name), "uses_llm", True) for v in self.variants):
            return "none (no LLM agent)"
        return self.llm or "the caller's llm_factory"

    def with_default_llm(self) -> tuple["BenchConfig", str | None]:
        """``(config, note)``: the config with :attr:`llm` resolved to the default model's spec when
        it is None and an agent uses an LLM (:func:`rlem_gym.llm.factory.default_llm_spec`); ``note``
        says what was picked instead of the zoo's 0.5B on llama.cpp, or what to install."""
        if self.llm is not None or self.model_label.startswith("none"):
            return self, None
        from rlem_gym.llm.factory import default_llm_spec

        spec, note = default_llm_spec()
        return self.replace(llm=spec), note

    def replace(self, **changes: Any) -> "BenchConfig":
        """A copy with ``changes`` applied (presets are customised this way)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        out["agents"] = list(self.agents)
        out["seeds"] = list(self.seeds)
        return out

    @classmethod
    def from_stored(cls, doc: dict[str, Any]) -> "BenchConfig":
        """The config of a run folder's ``config.json`` document (its ``config`` and ``config_version``).

        A version-1 document (no ``config_version``) is read with :data:`LEGACY_DEFAULTS`: each
        missing setting, and an ``llm`` of None when an agent uses an LLM, takes the value it had
        then, so that old runs keep their settings when resumed, re-rendered or restored.
        """
        data = dict(doc["config"])
        if int(doc.get("config_version", 1)) < 2:
            for key, value in LEGACY_DEFAULTS.items():
                if key not in data:
                    data[key] = value
            if data.get("llm") is None:
                probe = cls.from_dict({**data, "llm": None})
                if not probe.model_label.startswith("none"):
                    data["llm"] = LEGACY_DEFAULTS["llm"]
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}: they are not BenchConfig fields")
        return cls(**data)

    def result_fields(self) -> dict[str, Any]:
        """The fields that determine results (everything but where/how the run executes).

        Resume refuses a run folder whose stored config differs from the new one in these.
        """
        skip = {"workers", "ray", "ray_workers", "out", "progress", "bootstrap", "reference"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}


@functools.cache
def field_docs(cls: type = BenchConfig) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body (read from the source)."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_kind(cls: type, name: str) -> tuple[type, bool]:
    """(base type, optional?) of a field, from its annotation: e.g. ``int | None`` -> (int, True)."""
    hints = typing.get_type_hints(cls)
    hint = hints[name]
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin is not None:
        return origin, optional
    return hint, optional
