"""The generic adapter: the Rememberer, ReAct and static agents on any env with text observations.

An env fits when its observations are text (or turn into text through ``observation=``) and
the actions valid at each step are known. The adapter takes them, in this order, from:

1. ``actions=``: a callable ``actions(info) -> list[str]`` (close over the env to ask it);
2. the step's ``info``: the first of ``info["available_actions"]``, ``info["admissible_commands"]``
   and ``info["valid_actions"]`` that is there, which must be a list of strings;
3. action names that hold at every step: ``action_names=``, else the env's own
   (``env.unwrapped.action_names``, ``get_action_meanings()``, or an ``actions`` Enum as
   MiniGrid has). A ``Discrete`` action space needs them: :meth:`GenericAdapter.env_action`
   turns a name into the index the env steps with.

Everything else follows from the contract of :class:`~rlem_gym.agents.adapters.EnvAdapter`:

- **memory key** ``(task, observation, "")``: the task is ``task(obs, info)`` when given, else the
  first of ``info``'s ``instruction``, ``mission``, ``goal``, ``task``, ``objective`` fields
  (``task_keys=``; a dict observation is searched too), else the episode's first observation;
- **matcher** (:class:`GenericMatcher`): task similarity is the word LCS of the two tasks (the
  cosine of their embeddings with ``embedder=``), observation similarity is 1 when the two
  observations have the same ``obs_feature`` (default: the whole observation, case and spacing
  ignored);
- **actions**: a reply's action is the line itself, matched to a listed action case- and
  spacing-insensitively; it is valid when the step lists it; constrained decoding chooses among
  the listed actions; the fallback takes them in the order listed;
- **prompts**: :func:`rlem_gym.prompts.generic_preamble` with the env's ``description=``, the
  input block :func:`rlem_gym.prompts.render_generic_input`, and the format-only exemplars and
  ReAct example at the end of this file (``exemplars=``, ``react_example=`` replace them).

``make_agent("rememberer", llm, env=my_env, **keywords)`` builds one; every keyword of
:class:`GenericAdapter` can be given there.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from rlem_gym.advice import AdviceLine
from rlem_gym.agents.adapters import EnvAdapter
from rlem_gym.llm.constraint import ActionConstraint
from rlem_gym.memory.similarity import Matcher, MemoryKey, lcs_similarity
from rlem_gym.prompts import Exemplar, generic_preamble, generic_react_preamble, render_generic_input
from rlem_gym.trajectory import Situation

if TYPE_CHECKING:
    from rlem_gym.memory.embeddings import Embedder

#: ``info`` fields that name the task, tried in order
TASK_KEYS: tuple[str, ...] = ("instruction", "mission", "goal", "task", "objective")
#: ``info`` fields that list the step's valid actions, tried in order
ACTION_KEYS: tuple[str, ...] = ("available_actions", "admissible_commands", "valid_actions")
#: the keywords of :class:`GenericAdapter` that ``make_agent(..., env=...)`` passes on to it
ADAPTER_KEYWORDS: tuple[str, ...] = (
    "actions",
    "action_names",
    "task",
    "task_keys",
    "observation",
    "obs_feature",
    "description",
    "preamble",
    "react_preamble",
    "react_example",
    "noop_action",
)
#: most characters of an unlisted action read from a reply (it is invalid anyway)
_MAX_ACTION_CHARS = 200
#: characters stripped around an action a model wrote (quotes, code and bold marks, a final period)
_STRIP = "`'\"* "


def normalize_action(text: str) -> str:
    """An action's comparison form: lower case, single spaces."""
    return " ".join(str(text).split()).lower()


def normalize_observation(text: str) -> str:
    """The default observation feature: the whole observation, lower case, single spaces."""
    return " ".join(str(text).split()).lower()


def _string_list(value: Any, where: str) -> list[str]:
    """``value`` as a list of strings, or a ValueError naming ``where`` it came from."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{where} is a {type(value).__name__}, not a list of action strings: "
            "pass actions=callable(info) -> list[str]"
        )
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        raise ValueError(
            f"{where} holds a {type(bad[0]).__name__} ({bad[0]!r}), not only action strings: "
            "pass actions=callable(info) -> list[str]"
        )
    return list(value)


def react_turn(observation: str, actions: Sequence[str], task: str = "") -> str:
    """One ReAct observation of the generic layout: the task (when given), the observation, the listed actions."""
    head = f"Task: {task}\n" if task else ""
    listed = "\n".join(f"- {a}" for a in actions)
    return f"{head}{observation}\nAvailable actions:\n{listed}"


def env_action_names(env: Any) -> tuple[list[str], dict[str, int]] | None:
    """The env's own action names and the index of each, or None when it names none.

    Looked for on ``env.unwrapped``: an ``action_names`` list (or method), Atari's
    ``get_action_meanings()``, or an ``actions`` Enum class (MiniGrid's ``Actions``; a member's
    value is its index). Names listed without indices count from the action space's ``start``.
    """
    base = getattr(env, "unwrapped", env)
    start = int(getattr(getattr(env, "action_space", None), "start", 0) or 0)
    for attr in ("action_names", "get_action_meanings"):
        names = getattr(base, attr, None)
        if callable(names) and not isinstance(names, type):
            names = names()
        if names is not None:
            names = _string_list(names, f"env.unwrapped.{attr}")
            return names, {n: start + i for i, n in enumerate(names)}
    actions = getattr(base, "actions", None)
    if isinstance(actions, type) and issubclass(actions, enum.Enum):
        members = sorted(actions, key=lambda m: int(m.value))
        return [m.name for m in members], {m.name: int(m.value) for m in members}
    return None


class GenericMatcher(Matcher):
    """Similarity of two generic memory keys.

    task similarity = the normalised word LCS of the two tasks (:func:`lcs_similarity`), or with an
    ``embedder`` the cosine of their sentence embeddings; observation similarity = 1 when
    ``obs_feature`` gives both observations the same value (default :func:`normalize_observation`).
    """

    def __init__(
        self,
        obs_feature: Callable[[str], str] | None = None,
        lam: float = 0.5,
        embedder: "Embedder | None" = None,
    ) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.feature_fn = obs_feature or normalize_observation
        self.lam = float(lam)
        self.embedder = embedder
        self.exact_task_from_vectors = embedder is not None
        self.name = "generic:" + ("insrel" if embedder is not None else "lcs") + "+obs"

    def obs_feature(self, key: MemoryKey) -> str:
        return str(self.feature_fn(key.observation))

    def task_similarities(self, query_task, tasks, query_vec=None, vecs=None):
        if self.embedder is None:
            return np.array([lcs_similarity(query_task, t) for t in tasks], dtype=np.float64)
        if query_vec is None:
            query_vec = self.embedder.encode([query_task])[0]
        if vecs is None:
            vecs = self.embedder.encode(list(tasks))
        return np.clip(vecs.astype(np.float64) @ query_vec.astype(np.float64), -1.0, 1.0)


class GenericAdapter(EnvAdapter):
    """An adapter for any env with text observations and known valid actions (see the module docstring).

    Args:
        env: the env (a Gymnasium env, wrapped or not), read for its spaces and action names
            only; never stepped. None: the actions come from ``actions=`` or the step's ``info``.
        actions: ``actions(info) -> list[str]``, the actions valid at this step.
        action_names: the actions valid at every step (for a ``Discrete`` space, in index order).
        task: ``task(obs, info) -> str``, the episode's task (the memory key's first part).
        task_keys: the ``info`` fields (or dict-observation keys) that may hold the task, in order.
        observation: ``observation(obs, info) -> str``, the text of a non-text observation.
        obs_feature: ``obs_feature(observation_text) -> str``, the matcher's observation feature.
        description: one paragraph on the env for the prompts (``"I play a text adventure."``).
        preamble, react_preamble: replace the whole Rememberer / ReAct preamble.
        react_example: replace the ReAct example trajectory.
        exemplars: replace the static agent's default exemplars.
        noop_action: what the ``"noop"`` fallback (and a step with no valid action) sends.
        name: the adapter's name (in run records); default ``"generic"``.

    Episode state: the adapter remembers the episode's first observation (the task of envs that
    name none), so one adapter serves one agent at a time. ``make_agent`` builds one per agent.
    """

    name = "generic"

    def __init__(
        self,
        env: Any = None,
        *,
        actions: Callable[[dict[str, Any]], Sequence[str]] | None = None,
        action_names: Sequence[str] | None = None,
        task: Callable[[Any, dict[str, Any]], str] | None = None,
        task_keys: Sequence[str] = TASK_KEYS,
        observation: Callable[[Any, dict[str, Any]], str] | None = None,
        obs_feature: Callable[[str], str] | None = None,
        description: str | None = None,
        preamble: str | None = None,
        react_preamble: str | None = None,
        react_example: str | None = None,
        exemplars: Sequence[Exemplar] | None = None,
        noop_action: str = "noop",
        name: str = "generic",
    ) -> None:
        for arg, fn in (
            ("actions", actions),
            ("task", task),
            ("observation", observation),
            ("obs_feature", obs_feature),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg}= must be a callable, got {type(fn).__name__}")
        if isinstance(task_keys, str):
            task_keys = (task_keys,)
        self.name = str(name)
        self.env = env
        self.actions_fn = actions
        self.task_fn = task
        self.task_keys = tuple(task_keys)
        self.observation_fn = observation
        self.obs_feature = obs_feature
        self.preamble = preamble if preamble is not None else generic_preamble(description)
        self.react_preamble = react_preamble if react_preamble is not None else generic_react_preamble(description)
        self._react_example = react_example
        self._exemplars = None if exemplars is None else list(exemplars)
        self.noop_action = str(noop_action)
        self._first_observation: str | None = None
        self._vocab: dict[str, str] = {}  # normalised action -> its spelling, over every list seen
        self._spellings: set[str] = set()
        self.names, self._index = self._static_names(env, action_names)
        self._check_env(env)
        if self.names is not None:
            self._learn(self.names)

    # -- the env ----------------------------------------------------------------------------------
    @staticmethod
    def _static_names(env: Any, action_names: Sequence[str] | None) -> tuple[list[str] | None, dict[str, int]]:
        if action_names is not None:
            names = _string_list(action_names, "action_names")
            start = int(getattr(getattr(env, "action_space", None), "start", 0) or 0)
            return names, {n: start + i for i, n in enumerate(names)}
        found = env_action_names(env) if env is not None else None
        return (None, {}) if found is None else found

    def _check_env(self, env: Any) -> None:
        """Refuse, with the reason and the keyword that helps, an env this adapter cannot drive."""
        if env is None:  # the actions come from actions=, action_names= or each step's info
            return
        from gymnasium import spaces

        label = type(getattr(env, "unwrapped", env)).__name__
        obs_space = getattr(env, "observation_space", None)
        if self.observation_fn is None and obs_space is not None and not isinstance(obs_space, spaces.Text):
            raise ValueError(
                f"cannot adapt {label}: its observations are {type(obs_space).__name__}, not text; "
                "pass observation=callable(obs, info) -> str"
            )
        act_space = getattr(env, "action_space", None)
        if isinstance(act_space, spaces.Discrete):
            if self.names is None:
                raise ValueError(
                    f"cannot adapt {label}: its Discrete({act_space.n}) actions have no names; "
                    "pass action_names=[...] (in index order)"
                )
            if len(self.names) != act_space.n:
                raise ValueError(f"cannot adapt {label}: {len(self.names)} action names for Discrete({act_space.n})")
        elif act_space is not None and not isinstance(act_space, spaces.Text) and self.actions_fn is None:
            raise ValueError(
                f"cannot adapt {label}: its action space is {type(act_space).__name__}, neither Text "
                "nor Discrete; wrap the env so that it steps with action strings"
            )

    def env_action(self, action: str) -> Any:
        """What ``env.step`` takes for ``action``: its index for a ``Discrete`` env, else the string itself."""
        from gymnasium import spaces

        if isinstance(getattr(self.env, "action_space", None), spaces.Discrete):
            if action not in self._index:
                raise ValueError(f"{action!r} is not one of the env's actions: {', '.join(self._index)}")
            return self._index[action]
        return action

    # -- the step's valid actions ---------------------------------------------------------------
    def valid_actions(self, info: dict[str, Any]) -> list[str]:
        """The actions valid at this step, in the order listed (see the module docstring for the sources)."""
        info = info or {}
        if self.actions_fn is not None:
            found = _string_list(self.actions_fn(info), "actions(info)")
        else:
            key = next((k for k in ACTION_KEYS if k in info), None)
            if key is not None:
                found = _string_list(info[key], f"info[{key!r}]")
            elif self.names is not None:
                found = list(self.names)
            else:
                raise ValueError(
                    "no valid actions for this step: info has none of "
                    f"{', '.join(ACTION_KEYS)} and the env names no actions; "
                    "pass actions=callable(info) -> list[str] or action_names=[...]"
                )
        self._learn(found)
        return found

    def _learn(self, actions: Sequence[str]) -> None:
        if len(self._vocab) > 100_000:  # a bound for envs with unbounded action strings
            self._vocab.clear()
            self._spellings.clear()
        for a in actions:
            self._spellings.add(a)
            self._vocab.setdefault(normalize_action(a), a)

    # -- prompt parts -----------------------------------------------------------------------------
    def begin_episode(self, obs: Any, info: dict[str, Any]) -> None:
        self._first_observation = self.observation_text(obs, info)

    def observation_text(self, obs: Any, info: dict[str, Any]) -> str:
        """The observation as text (``observation=`` for a non-text one)."""
        if self.observation_fn is not None:
            return str(self.observation_fn(obs, info or {}))
        if isinstance(obs, str):
            return obs
        raise TypeError(
            f"the observation is a {type(obs).__name__}, not text: pass observation=callable(obs, info) -> str"
        )

    def task_text(self, obs: Any, info: dict[str, Any]) -> str:
        """The episode's task (see the module docstring for where it comes from)."""
        info = info or {}
        if self.task_fn is not None:
            return str(self.task_fn(obs, info))
        for source in (info, obs if isinstance(obs, Mapping) else {}):
            for key in self.task_keys:
                value = source.get(key)
                if isinstance(value, str) and value.strip():
                    return value
        if self._first_observation is None:  # act() without a reset: this observation starts the episode
            self._first_observation = self.observation_text(obs, info)
        return self._first_observation

    def render_input(self, inp: Situation) -> str:
        return render_generic_input(inp)

    def memory_key(self, obs: Any, info: dict[str, Any]) -> tuple[str, str, str]:
        return (self.task_text(obs, info), self.observation_text(obs, info), "")

    def available_actions(self, info: dict[str, Any]) -> tuple[str, ...]:
        return tuple(self.valid_actions(info))

    def react_observation(self, obs: Any, info: dict[str, Any], first: bool) -> str:
        text = self.observation_text(obs, info)
        task = self.task_text(obs, info) if first else ""
        return react_turn(text, self.valid_actions(info), task if task not in text else "")

    def react_example(self) -> str:
        return REACT_EXAMPLE if self._react_example is None else self._react_example

    def default_exemplars(self) -> list[Exemplar]:
        return list(STATIC_EXEMPLARS) if self._exemplars is None else list(self._exemplars)

    # -- actions --------------------------------------------------------------------------------
    def extract_actions(self, text: str) -> list[str]:
        """The action a line names: a listed action (any case and spacing, quotes stripped), else the line itself."""
        line = next((ln.strip() for ln in str(text or "").splitlines() if ln.strip()), "")
        if not line:
            return []
        candidates = [line, line.strip(_STRIP), line.strip(_STRIP).rstrip(".").strip(_STRIP)]
        for c in candidates:
            if c in self._spellings:
                return [c]
        for c in candidates:
            known = self._vocab.get(normalize_action(c))
            if known is not None:
                return [known]
        action = " ".join(candidates[-1].split())[:_MAX_ACTION_CHARS]
        return [action] if action else []

    def is_valid_canonical(self, action: str, info: dict[str, Any]) -> bool:
        return action in self.valid_actions(info)

    def fallback_candidates(self, obs: Any, info: dict[str, Any]) -> list[str]:
        return self.valid_actions(info)

    def action_constraint(self, info: dict[str, Any]) -> ActionConstraint:
        """Each listed action as a literal (one that spans lines cannot be written in the slot and is left out)."""
        return ActionConstraint.of(a for a in self.valid_actions(info) if "\n" not in a and "\r" not in a)

    # -- memory ---------------------------------------------------------------------------------
    def make_matcher(self, embedder: "Embedder | None" = None, lam: float = 0.5) -> GenericMatcher:
        """:class:`GenericMatcher` with this adapter's ``obs_feature`` (word LCS of tasks, or ``embedder``'s cosine)."""
        return GenericMatcher(self.obs_feature, lam=lam, embedder=embedder)


# ------------------------------------------------------------------------- shipped examples
# Format-only: a made-up two-box room that shows the layout of an input, of the advice and of a
# ReAct transcript. Pass exemplars= / react_example= written over your env for a real baseline.
_TASK = "Open the red box."
_ROOM = "You are in a small room. There is a red box and a blue box on the floor. A door leads east."
_ROOM_ACTIONS = ("open red box", "open blue box", "go east", "look")

STATIC_EXEMPLARS: tuple[Exemplar, ...] = (
    Exemplar(
        Situation(task=_TASK, observation=_ROOM, available_actions=_ROOM_ACTIONS),
        encouraged=(AdviceLine("open red box", 1.0, "The task asks to open the red box, and it is here."),),
        discouraged=(AdviceLine("open blue box", 0.0, "The blue box is not the one the task names."),),
    ),
)

REACT_EXAMPLE = f"""{react_turn(_ROOM, _ROOM_ACTIONS, _TASK)}
Action: think[The task names the red box, and "open red box" is an available action.]
Observation: OK.
Action: open red box
Observation:
{react_turn("You open the red box. The task is done.", ("close red box", "go east", "look"))}"""
