"""The test-phase executors: serial, local worker processes, or Ray actors.

Test episodes are independent (the memory is frozen), so they can run anywhere. Every executor
plays each :class:`~rlem_gym.benchmarks.plan.WorkItem` with
:func:`~rlem_gym.benchmarks.episode.run_episode` inside an
:class:`~rlem_gym.benchmarks.episode.EpisodeContext` of its own process, and hands each outcome
``(status, payload)`` to ``commit`` in the main process (the :class:`~rlem_gym.benchmarks.runner.Runner`
writes the completion record). Step log lines go to ``episodes.jsonl``: written by the worker
processes themselves, or shipped back from Ray actors with their outcome.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.benchmarks.build import LLMFactory
from rlem_gym.benchmarks.episode import EpisodeContext, RunError, attempt_test
from rlem_gym.benchmarks.plan import Split, WorkItem
from rlem_gym.benchmarks.rundir import StepLog

#: receives each finished test episode in the main process: ``commit(status, payload)``
Commit = Callable[[str, dict[str, Any]], None]

__all__ = ["Commit", "run_processes", "run_ray", "run_serial"]


# --------------------------------------------------------------------------------------------
# serial (in the main process)
# --------------------------------------------------------------------------------------------
def run_serial(
    ctx: EpisodeContext,
    items: list[WorkItem],
    log: StepLog,
    commit: Commit,
    on_event: Callable[[str, dict[str, Any]], None],
) -> None:
    """Play ``items`` one after the other in this process."""
    for item in items:
        on_event("episode_start", {"item": item.id})
        commit(*attempt_test(ctx, item, log.write))


# --------------------------------------------------------------------------------------------
# local worker processes
# --------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_init(
    cfg_dict: dict[str, Any],
    splits: dict[str, Split],
    llm_factory: LLMFactory,
    memory_paths: dict[str, str],
    log_path: str,
    parent_pid: int,
) -> None:
    _WORKER["ctx"] = EpisodeContext(BenchConfig.from_dict(cfg_dict), splits, llm_factory, memory_paths)
    _WORKER["log"] = StepLog(log_path)
    _WORKER["parent"] = parent_pid


def _worker_log(line: dict[str, Any]) -> None:
    if os.getppid() != _WORKER["parent"]:  # the run was killed: stop writing to its log
        os._exit(1)
    _WORKER["log"].write(line)


def _worker_run(item_dict: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return attempt_test(_WORKER["ctx"], WorkItem.from_dict(item_dict), _worker_log)


def run_processes(
    cfg: BenchConfig,
    splits: dict[str, Split],
    llm_factory: LLMFactory,
    memory_paths: dict[str, str],
    log_path: str | Path,
    items: list[WorkItem],
    commit: Commit,
) -> None:
    """Play ``items`` in ``cfg.workers`` spawned processes (each loads the model once)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(cfg.workers, len(items)),
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(cfg.to_dict(), splits, llm_factory, memory_paths, str(log_path), os.getpid()),
    ) as pool:
        futures = [pool.submit(_worker_run, item.as_dict()) for item in items]
        try:
            for fut in as_completed(futures):
                commit(*fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


# --------------------------------------------------------------------------------------------
# Ray actors
# --------------------------------------------------------------------------------------------
class _RayEpisodeWorker:
    """A Ray actor: holds one EpisodeContext (the LLM is loaded once per actor).

    The frozen test memories arrive as bytes (:func:`_pack_tree`) and are written to a private
    temp folder, a copy that :meth:`close` deletes (the run folder keeps the originals).
    """

    def __init__(
        self,
        cfg_dict: dict[str, Any],
        splits: dict[str, Split],
        llm_factory: LLMFactory,
        memories: dict[str, dict[str, bytes]],
    ) -> None:
        import tempfile

        self._tmp = tempfile.mkdtemp(prefix="rlem-ray-mem-")
        paths: dict[str, str] = {}
        for n, (slot, files) in enumerate(memories.items()):
            root = Path(self._tmp) / f"m{n}" / "memory"
            for rel, data in files.items():
                dest = root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            paths[slot] = str(root)
        self.ctx = EpisodeContext(BenchConfig.from_dict(cfg_dict), splits, llm_factory, paths)

    def run(self, item_dict: dict[str, Any]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        lines: list[dict[str, Any]] = []
        status, payload = attempt_test(self.ctx, WorkItem.from_dict(item_dict), lines.append)
        return status, payload, lines

    def close(self) -> None:
        """Free the model and delete this actor's memory copies (only its own temp folder)."""
        self.ctx.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _pack_tree(path: Path) -> dict[str, bytes]:
    """The bytes of the files of a saved memory folder, keyed by path relative to it."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def run_ray(
    cfg: BenchConfig,
    splits: dict[str, Split],
    llm_factory: LLMFactory,
    memory_paths: dict[str, str],
    items: list[WorkItem],
    log: StepLog,
    commit: Commit,
) -> None:
    """Play ``items`` on ``cfg.ray_workers`` Ray actors (``cfg.ray``: "local" or a cluster address)."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise RunError("--ray needs Ray: pip install 'rlem-gym[ray]'") from None
    address = None if cfg.ray in ("", "local") else cfg.ray
    try:
        ray.init(
            address=address,
            ignore_reinit_error=True,
            log_to_driver=False,
            include_dashboard=False,
            configure_logging=False,
        )
    except Exception as exc:  # ConnectionError and friends
        raise RunError(f"cannot connect to the Ray cluster {address!r} ({exc}): start it or pass --ray local") from None
    # the memories go into the object store once; every actor gets the same reference
    memories = ray.put({slot: _pack_tree(Path(path)) for slot, path in memory_paths.items()})
    actor_cls = ray.remote(num_cpus=1)(_RayEpisodeWorker)
    n = min(cfg.ray_workers, len(items))
    actors = [actor_cls.remote(cfg.to_dict(), splits, llm_factory, memories) for _ in range(n)]
    pool = ActorPool(actors)
    try:
        for status, payload, lines in pool.map_unordered(lambda a, it: a.run.remote(it), [i.as_dict() for i in items]):
            log.write_many(lines)
            commit(status, payload)
    finally:
        # each actor deletes its temp copies of the memories once its queued episodes are done
        # (at once after a finished test phase); one still busy after 10 s keeps its copies
        try:
            ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=10)
        except Exception:  # noqa: BLE001 - cleanup must not hide the run's own error
            pass
        for a in actors:
            ray.kill(a)
        if address is None:
            ray.shutdown()  # this run started the local cluster; stop it
