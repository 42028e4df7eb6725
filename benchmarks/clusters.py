"""Which test goals belong together: the clusters of the cluster bootstrap, read from the env's data.

A bootstrap over goals treats every goal as an independent draw. Goals that share what makes them
easy or hard are not: the cluster bootstrap (:func:`rlem_gym.benchmarks.stats.cluster_bootstrap_ci`)
resamples them together. :func:`task_clusters` names the cluster of every task of a split, from
the task labels a run keeps in its ``config.json`` (so a finished run's clusters are computed at
report time, from its records and the env data, with nothing added to the records):

- **WebShop: the target product.** A goal is one instruction for one product (its ``asin``), and
  the synthetic goals of a product differ only in option values and price bound, so the goals of a
  product share its search results, its page and most of its reward. On the shipped catalog the 50
  goals of ``test[0:50]`` ask for 35 products (one product for 7 of them).
- **WikiHow: the article.** A task's difficulty is that of finding and opening its article(s);
  tasks that open a common article (first or second) form one cluster (linked transitively). No two
  tasks of the shipped sets share an article (microcanon70: 70 tasks, 77 articles, every one
  opened by a single task; canonical178 likewise), nor an author or category page, so there every
  task is its own cluster and the cluster interval equals the per-goal one. The task *type* (the
  sub-goal chain: search + article, + about, + reference, + category, + author + article, ...) is
  not used as a cluster: it is a fixed part of the design (all six types of microcanon70 are in the
  test set, with 3 to 29 tasks each), not a sample of many types, and resampling six types
  measures which types were drawn rather than any dependence between tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["Clusters", "task_clusters", "webshop_clusters", "wikihow_clusters"]

_GOAL_LABEL = re.compile(r"^goal (\d+)$")


@dataclass(frozen=True)
class Clusters:
    """The cluster of every task of a split, in task order, and what a cluster is (``unit``)."""

    unit: str
    """What one cluster is, for table headers: "target product" (WebShop) or "article" (WikiHow)."""
    ids: tuple[str, ...]
    """One cluster id per task (the product's ASIN; the article's title)."""

    @property
    def count(self) -> int:
        """The number of distinct clusters."""
        return len(set(self.ids))

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "count": self.count, "tasks": len(self.ids), "ids": list(self.ids)}


def webshop_clusters(labels: Sequence[str], env_kwargs: Mapping[str, Any] | None = None) -> Clusters:
    """The target product of every WebShop task, from labels ``"goal <global goal index>"``.

    ``env_kwargs``: the run's env keyword arguments; ``data_dir``, ``num_products`` and ``goals``
    select the catalog and the goal list the indices refer to.
    """
    from rlem_gym.envs.webshop.catalog import get_catalog
    from rlem_gym.envs.webshop.goals import get_goals

    kw = dict(env_kwargs or {})
    goals = get_goals(get_catalog(kw.get("data_dir"), kw.get("num_products")), kw.get("goals", "synthetic"))
    ids = []
    for label in labels:
        m = _GOAL_LABEL.match(str(label))
        if m is None:
            raise ValueError(f"cannot tell the WebShop goal of task {label!r}: expected a label 'goal <index>'")
        g = int(m.group(1))
        if g >= len(goals):
            raise ValueError(f"task {label!r} is out of range: the catalog has {len(goals)} goals")
        ids.append(str(goals[g]["asin"]))
    return Clusters("target product", tuple(ids))


def wikihow_clusters(labels: Sequence[str]) -> Clusters:
    """The article cluster of every WikiHow task, from labels that are task ids (or file stems).

    Tasks that open a common article are joined (union-find over the articles they open); a
    cluster is named by the first article of its first task in ``labels`` order.
    """
    from rlem_gym.envs.wikihow.tasks import all_tasks

    tasks = all_tasks()
    by_stem = {t.file_stem: t for t in tasks.values()}
    chosen = []
    for label in labels:
        task = tasks.get(label) or by_stem.get(label)
        if task is None:
            raise ValueError(f"unknown WikiHow task {label!r}: expected a task id of the bundle")
        chosen.append(task)
    parent = list(range(len(chosen)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    opened_by: dict[str, int] = {}
    for i, task in enumerate(chosen):
        for goal in task.subgoals:
            if goal.kind != "article":
                continue
            j = opened_by.setdefault(goal.target.lower(), i)
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the earliest task names the cluster
    return Clusters("article", tuple(chosen[root(i)].title for i in range(len(chosen))))


def task_clusters(env: str, labels: Sequence[str], env_kwargs: Mapping[str, Any] | None = None) -> Clusters:
    """The cluster of every task of a split of ``env``, from its task labels.

    WebShop tasks cluster by target product, WikiHow tasks by the articles they open. TextWorld's
    games are generated one per seed and share nothing, so each game is its own cluster.
    """
    if env == "webshop":
        return webshop_clusters(labels, env_kwargs)
    if env == "wikihow":
        return wikihow_clusters(labels)
    if env == "textworld":
        return Clusters("game", tuple(labels))
    raise ValueError(f"no clusters are defined for env {env!r}: use webshop, wikihow or textworld")
