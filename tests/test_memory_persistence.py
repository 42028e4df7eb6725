"""Saving, loading and importing memories: round trips, crash safety, clear errors, official pools."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rlem_gym.envs.wikihow.patterns import instruction_pattern
from rlem_gym.memory import EmbedderMismatchError, ExperienceMemory, MemoryFormatError, import_official_pool
from rlem_gym.memory.similarity import WebShopMatcher, WikiHowMatcher
from rlem_gym.trajectory import Step

DATA = Path(__file__).parent / "data"
POOL = DATA / "init_pool5.q.yaml"
SHARED_POOLS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wikihow" / "rememberer" / "history-pools"
)


class Renamed:
    """The same model under another name: what a memory built with another embedder looks like."""

    def __init__(self, inner, name):
        self.inner, self.name, self.dim = inner, name, inner.dim

    def encode(self, texts):
        return self.inner.encode(texts)


def wikihow_memory(**kw) -> ExperienceMemory:
    m = ExperienceMemory(WikiHowMatcher(instruction_pattern), **kw)
    m.update(
        "task one",
        [
            Step.of("s1", "CLICK(1)", 0.0, reason="open it", instruction='Access the article "How to A"'),
            Step.of("s2", "GOBACK", 1.0),
        ],
    )
    m.update(
        "task two", [Step.of("s3", "SCROLL(DOWN)", -1.0, last_actions=("CLICK(1)",), last_reward=1.0, total_reward=1.0)]
    )
    return m


def snapshot(m: ExperienceMemory):
    return [
        (
            r.id,
            r.key,
            r.situation,
            r.visits,
            r.inserted_at,
            r.feature,
            [(a, s.q, s.visits, s.last_reward, s.reason) for a, s in r.actions.items()],
        )
        for r in m.records()
    ]


# ----------------------------------------------------------------------------- round trips
def test_round_trip_wikihow(tmp_path):
    m = wikihow_memory(n_step=1, gamma=0.9, double_q=True, seed=5)
    m.save(tmp_path / "mem")
    loaded = ExperienceMemory.load(tmp_path / "mem", WikiHowMatcher(instruction_pattern))
    assert snapshot(loaded) == snapshot(m)
    assert (loaded.n_step, loaded.gamma, loaded.double_q) == (1, 0.9, True)
    assert [r.tables for r in loaded.records()] == [r.tables for r in m.records()]
    # the RNG continues where it stopped, so double-Q choices are reproducible across a save
    assert loaded.rng.integers(1 << 30) == m.rng.integers(1 << 30)
    # learning continues identically
    for mm in (m, loaded):
        mm.update("task one", [Step.of("s1", "CLICK(1)", 3.0)])
    assert snapshot(loaded) == snapshot(m)
    assert ExperienceMemory.load(tmp_path / "mem", WikiHowMatcher(instruction_pattern), capacity=1).capacity == 1


def test_round_trip_webshop_reuses_vectors_and_refuses_another_embedder(minilm, page_kind, tmp_path):
    m = ExperienceMemory(WebShopMatcher(minilm, page_kind))
    m.update(
        "i want red running shoes",
        [Step.of("search p", "search[red shoes]", 0.0), Step.of("results p", "click[b1]", 1.0)],
    )
    m.update("a usb microphone", [Step.of("search p", "search[mic]", 0.0)])
    m.save(tmp_path / "mem")
    files = sorted(p.name for p in (tmp_path / "mem").iterdir())
    assert files[0] == "MANIFEST.json" and len(files) == 3  # manifest + records + vectors
    with np.load(tmp_path / "mem" / next(f for f in files if f.endswith(".npz")), allow_pickle=False) as z:
        assert z["vectors"].shape == (2, 384)  # one vector per distinct task

    class Counting(Renamed):
        calls = 0

        def encode(self, texts):
            Counting.calls += len(texts)
            return self.inner.encode(texts)

    counting = Counting(minilm, minilm.name)
    loaded = ExperienceMemory.load(tmp_path / "mem", WebShopMatcher(counting, page_kind))
    assert Counting.calls == 0  # vectors come from the NPZ, not re-encoded
    assert snapshot(loaded) == snapshot(m)
    q = ("red shoes for running", "results z")
    assert [(h.record_id, round(h.score, 6)) for h in loaded.retrieve(*q, k=3)] == [
        (h.record_id, round(h.score, 6)) for h in m.retrieve(*q, k=3)
    ]
    with pytest.raises(EmbedderMismatchError, match="load_embedder"):
        ExperienceMemory.load(tmp_path / "mem", WebShopMatcher(Renamed(minilm, "other/model"), page_kind))


# ----------------------------------------------------------------------------- bad files
def _rewrite(path: Path, data: bytes, manifest_entry: str | None = None) -> None:
    """Replace a data file and (optionally) make the manifest agree with it, to reach the parser."""
    path.write_bytes(data)
    if manifest_entry:
        mpath = path.parent / "MANIFEST.json"
        man = json.loads(mpath.read_text())
        man["files"][manifest_entry].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        mpath.write_text(json.dumps(man))


@pytest.fixture()
def saved(minilm, page_kind, tmp_path):
    m = ExperienceMemory(WebShopMatcher(minilm, page_kind))
    m.update("i want red running shoes", [Step.of("search p", "search[red shoes]", 0.0)])
    m.save(tmp_path / "mem")
    man = json.loads((tmp_path / "mem" / "MANIFEST.json").read_text())
    return tmp_path / "mem", man, WebShopMatcher(minilm, page_kind)


def test_truncated_records_file(saved):
    root, man, matcher = saved
    p = root / man["files"]["records"]["name"]
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(MemoryFormatError, match="truncated or corrupted"):
        ExperienceMemory.load(root, matcher)


def test_truncated_or_garbage_json_and_npz_behind_a_matching_manifest(saved):
    root, man, matcher = saved
    rec = root / man["files"]["records"]["name"]
    good = rec.read_bytes()
    _rewrite(rec, good[: len(good) // 2], "records")
    with pytest.raises(MemoryFormatError, match="not valid JSON"):
        ExperienceMemory.load(root, matcher)
    _rewrite(rec, json.dumps({"format_version": 1, "tasks": "x"}).encode(), "records")
    with pytest.raises(MemoryFormatError, match="does not match format"):
        ExperienceMemory.load(root, matcher)
    _rewrite(rec, good, "records")
    vec = root / man["files"]["vectors"]["name"]
    for junk in (vec.read_bytes()[:100], os.urandom(500)):
        _rewrite(vec, junk, "vectors")
        with pytest.raises(MemoryFormatError, match="not a valid NPZ"):
            ExperienceMemory.load(root, matcher)


def test_garbage_manifest_wrong_version_and_missing(saved, tmp_path):
    root, man, matcher = saved
    mpath = root / "MANIFEST.json"
    mpath.write_bytes(b"\x00\xff garbage")
    with pytest.raises(MemoryFormatError, match="not a memory manifest"):
        ExperienceMemory.load(root, matcher)
    mpath.write_text(json.dumps({**man, "format_version": 99}))
    with pytest.raises(MemoryFormatError, match="format_version 99"):
        ExperienceMemory.load(root, matcher)
    with pytest.raises(MemoryFormatError, match="no saved memory"):
        ExperienceMemory.load(tmp_path / "nowhere", matcher)
    (tmp_path / "file.json").write_text("[1, 2")
    with pytest.raises(MemoryFormatError):
        ExperienceMemory.load(tmp_path / "file.json", matcher)


def test_npz_with_pickled_objects_is_refused(saved):
    root, man, matcher = saved
    vec = root / man["files"]["vectors"]["name"]
    import io

    buf = io.BytesIO()
    np.savez(buf, vectors=np.array([{"a": 1}], dtype=object))
    _rewrite(vec, buf.getvalue(), "vectors")
    with pytest.raises(MemoryFormatError):
        ExperienceMemory.load(root, matcher)


# ----------------------------------------------------------------------------- crash safety
CHILD = textwrap.dedent(
    """
    import sys
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WikiHowMatcher
    from rlem_gym.trajectory import Step
    m = ExperienceMemory(WikiHowMatcher(str), capacity=100000)
    pad = "x" * 20000
    i = 0
    while True:
        m.update("task", [Step.of(f"obs {i} " + pad, "CLICK(1)", float(i))])
        m.save(sys.argv[1])
        print(i, flush=True)
        i += 1
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.037])
def test_kill_9_while_saving_leaves_a_complete_earlier_version(tmp_path, delay):
    path = tmp_path / "mem"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        saved = -1
        while saved < 4:  # let a few saves complete (the files grow each time)
            line = proc.stdout.readline()
            assert line, "the saving child died"
            saved = int(line)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    m = ExperienceMemory.load(path, WikiHowMatcher(str))
    n = len(m)
    assert n >= saved + 1  # at least the last save the child reported
    # complete: exactly records 0..n-1, each with its own Q
    assert sorted(int(r.key.observation.split()[1]) for r in m.records()) == list(range(n))
    assert all(r.actions["CLICK(1)"].q == float(r.key.observation.split()[1]) for r in m.records())
    m.save(path)  # the next save cleans up what the killed one left
    assert len(list(path.iterdir())) == 2


# ----------------------------------------------------------------------------- official pools
def test_import_shipped_official_pool():
    m = import_official_pool(POOL, WikiHowMatcher(instruction_pattern))
    assert len(m) == 2
    first, second = m.records()
    assert first.key.task.startswith("Search an article to learn how to bypass youtube's regional filter.")
    assert first.key.instruction == "" and first.key.observation.startswith("<button")
    a, stats = first.sorted_actions()[0]
    assert (a, stats.q, stats.visits, stats.last_reward) == ("INPUT(2, bypass youtube's regional filter)", 4.0, 1, 1.0)
    assert second.key.instruction == "Check the author page of Trudi Griffin, LPC, MS."
    assert second.situation.last_actions == ("INPUT(2, be a good friend to a guy)", "CLICK(3)")
    assert (second.situation.last_reward, second.situation.total_reward) == (1.0, 2.0)
    assert second.actions["CLICK(11)"].q == 2.0
    # retrieval on the imported pool: the author-page pattern and the task pick the second record
    hits = m.retrieve(second.key.task, "<screen>", "Check the author page of Ashley Adams.", k=2)
    assert hits[0].record is second and hits[0].obs_score == 1.0 and hits[0].task_score == 1.0
    # importing into an existing memory merges (visit-weighted)
    m2 = import_official_pool(
        POOL,
        WikiHowMatcher(instruction_pattern),
        memory=import_official_pool(POOL, WikiHowMatcher(instruction_pattern)),
    )
    assert len(m2) == 2 and m2.records()[0].actions["INPUT(2, bypass youtube's regional filter)"].visits == 2


def test_import_refuses_other_python_tags_and_garbage(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("? !!python/object/apply:os.system ['echo hi']\n: {}\n")
    with pytest.raises(MemoryFormatError):
        import_official_pool(evil, WikiHowMatcher(instruction_pattern))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(MemoryFormatError, match="not a Rememberer pool"):
        import_official_pool(bad, WikiHowMatcher(instruction_pattern))


@pytest.mark.skipif(not SHARED_POOLS.is_dir(), reason="../shared pools not present")
def test_import_every_official_pool_in_shared():
    total = 0
    for p in sorted(SHARED_POOLS.glob("*.yaml")):
        m = import_official_pool(p, WikiHowMatcher(instruction_pattern))
        assert len(m) >= 2 and all(r.actions for r in m.records())
        total += len(m)
    assert total >= 80
    big = import_official_pool(SHARED_POOLS / "annotated_pool-auto.q.yaml", WikiHowMatcher(instruction_pattern))
    assert len(big) == 38 and any(r.key.instruction == "" for r in big.records())


# ----------------------------------------------------------------------------- review fixes
def test_load_with_a_smaller_action_capacity_trims_the_tables(tmp_path):
    m = ExperienceMemory(WikiHowMatcher(instruction_pattern), double_q=True, seed=1)
    for a, r in (("a1", 0.5), ("a2", -0.2), ("a3", 0.3), ("a4", 0.9)):
        for _ in range(3):  # both tables get every action under this seed
            m.update("task", [Step.of("s", a, r)])
    assert all(len(t) == 4 for t in m.records()[0].tables)
    m.save(tmp_path / "mem")
    for double_q in (True, False):
        loaded = ExperienceMemory.load(
            tmp_path / "mem", WikiHowMatcher(instruction_pattern), action_capacity=2, double_q=double_q
        )
        rec = loaded.records()[0]
        assert set(rec.actions) == {"a1", "a4"}  # the two lowest |Q| are dropped
        assert all(len(t) <= 2 for t in rec.tables or [rec.actions])


def test_atomic_writes_keep_the_existing_mode_or_follow_the_umask(tmp_path):
    import stat

    from rlem_gym.atomic import atomic_write_bytes, atomic_write_text

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    old = os.umask(0o022)
    try:
        p = tmp_path / "new.txt"
        atomic_write_text(p, "x")
        assert mode(p) == 0o644  # like open(): 0o666 & ~umask, not mkstemp's private 0o600
        p.chmod(0o640)
        atomic_write_text(p, "y")
        assert mode(p) == 0o640 and p.read_text() == "y"  # a rewrite keeps the file's mode
        atomic_write_bytes(p, b"z", mode=0o600)
        assert mode(p) == 0o600 and p.read_bytes() == b"z"
        wikihow_memory().save(tmp_path / "mem")
        assert {mode(f) for f in (tmp_path / "mem").iterdir()} == {0o644}
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "s")
        assert mode(tmp_path / "private.txt") == 0o600
    finally:
        os.umask(old)
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_inspector_shows_the_merged_double_q_table_the_agent_sees(tmp_path):
    from rlem_gym.memory import ActionStats, merge_tables
    from rlem_gym.memory.inspect import read_saved_memory

    m = ExperienceMemory(WikiHowMatcher(instruction_pattern), double_q=True)
    m.update("task", [Step.of("s", "x", 1.0)])
    rec = m.records()[0]
    rec.tables = [
        {"x": ActionStats(1.0, visits=3, last_reward=1.0, reason="often"), "y": ActionStats(-1.0, 1, -1.0, "")},
        {"x": ActionStats(0.0, visits=1, last_reward=-1.0, reason="once")},
    ]
    rec.actions = merge_tables(rec.tables)
    m.save(tmp_path / "mem")
    _, views = read_saved_memory(tmp_path / "mem")
    agent = ExperienceMemory.load(tmp_path / "mem", WikiHowMatcher(instruction_pattern)).records()[0]
    shown = [(a.action, a.q, a.visits, a.last_reward, a.reason) for a in views[0].actions]
    assert shown == [(a, s.q, s.visits, s.last_reward, s.reason) for a, s in agent.sorted_actions()]
    assert shown[0] == ("x", 0.5, 4, 1.0, "often")  # the most visited table's reward and reason
