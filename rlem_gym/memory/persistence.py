"""Save and load an :class:`~rlem_gym.memory.ExperienceMemory` safely: JSON records + NPZ vectors.

:meth:`ExperienceMemory.save` / :meth:`~ExperienceMemory.load` call into this module, which never
imports the memory class back: :func:`save_memory` reads a memory through its methods, and
:func:`load_memory` builds one with the ``factory`` it is given (the class itself).

A saved memory is a directory::

    memory/
      MANIFEST.json             format, format_version, embedder name/dim, file names, sizes, sha256
      records-<generation>.json the records, action tables, settings and RNG state
      vectors-<generation>.npz  one unit vector per distinct task (absent without an embedder)

Every file is written to a temp file, fsync'ed and renamed; the data files of a save get a fresh
generation name and MANIFEST.json is replaced **last**. A crash (even ``kill -9``) at any moment
therefore leaves the manifest pointing at a complete earlier generation; stale generations are
removed after the next successful save. One writer per directory.

Loading checks the manifest, the version, each file's size and sha256, then parses; anything
wrong raises :class:`~rlem_gym.memory.MemoryFormatError` with a one-line reason, and a memory built
with another embedder raises :class:`~rlem_gym.memory.EmbedderMismatchError`. No pickle:
``np.load(..., allow_pickle=False)`` and ``json`` only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from rlem_gym.atomic import atomic_write_bytes
from rlem_gym.memory.embeddings import embedder_identity
from rlem_gym.memory.records import ActionStats, EmbedderMismatchError, MemoryFormatError
from rlem_gym.memory.similarity import Matcher
from rlem_gym.trajectory import Situation

#: the memory type built by ``factory`` (ExperienceMemory; this module does not import it: no cycle)
M = TypeVar("M")

FORMAT = "rlem-gym-memory"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
_DATA_FILE = re.compile(r"^(records|vectors)-[0-9a-f]{16}\.(json|npz)$")


# --------------------------------------------------------------------------- save
def _stats_json(table: dict[str, ActionStats]) -> list[list]:
    return [[a, s.q, s.visits, s.last_reward, s.reason] for a, s in table.items()]


def memory_to_json(memory: Any, tasks: list[str]) -> dict[str, Any]:
    """The JSON document of a memory's records and settings (tasks referenced by index)."""
    task_idx = {t: i for i, t in enumerate(tasks)}
    records = []
    for r in memory.records():
        tables = r.tables if r.tables is not None else [r.actions]
        records.append(
            {
                "id": r.id,
                "task": task_idx[r.situation.task],
                "observation": r.situation.observation,
                "instruction": r.situation.instruction,
                "visits": r.visits,
                "inserted_at": r.inserted_at,
                "updated_at": r.updated_at,
                "last_actions": list(r.situation.last_actions),
                "last_reward": r.situation.last_reward,
                "total_reward": r.situation.total_reward,
                "available_actions": list(r.situation.available_actions),
                "tables": [_stats_json(t) for t in tables],
            }
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "matcher": memory.matcher.describe(),
        "config": memory.config(),
        "next_id": memory._next_id,
        "tick": memory._tick,
        "rng_state": memory.rng.bit_generator.state,
        "action_fields": ["action", "q", "visits", "last_reward", "reason"],
        "tasks": tasks,
        "records": records,
    }


def save_memory(memory: Any, path: str | os.PathLike[str]) -> Path:
    """Save ``memory`` into directory ``path`` (created if needed), atomically; returns the path."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} is a file: ExperienceMemory.save() writes a directory; pass a directory path")
    root.mkdir(parents=True, exist_ok=True)
    tasks, vecs = memory.task_vectors()
    gen = uuid.uuid4().hex[:16]
    doc = memory_to_json(memory, tasks)
    files: dict[str, dict[str, Any]] = {}
    rec_bytes = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    rec_name = f"records-{gen}.json"
    atomic_write_bytes(root / rec_name, rec_bytes)
    files["records"] = {"name": rec_name, "bytes": len(rec_bytes), "sha256": hashlib.sha256(rec_bytes).hexdigest()}
    if vecs is not None:
        buf = io.BytesIO()
        np.savez(buf, vectors=np.ascontiguousarray(vecs, dtype=np.float32))
        vec_bytes = buf.getvalue()
        vec_name = f"vectors-{gen}.npz"
        atomic_write_bytes(root / vec_name, vec_bytes)
        files["vectors"] = {"name": vec_name, "bytes": len(vec_bytes), "sha256": hashlib.sha256(vec_bytes).hexdigest()}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generation": gen,
        "records": len(memory),
        "embedder": None if vecs is None else embedder_identity(memory.matcher.embedder),
        "files": files,
    }
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
    keep = {f["name"] for f in files.values()}
    for p in root.iterdir():  # drop older generations and temp files of killed saves
        if (_DATA_FILE.match(p.name) and p.name not in keep) or (p.name.startswith(".") and p.name.endswith(".tmp")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
    return root


# --------------------------------------------------------------------------- load
def _read_checked(root: Path, entry: Any, what: str) -> bytes:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not _DATA_FILE.match(entry["name"]):
        raise MemoryFormatError(f"{root / MANIFEST}: bad entry for the {what} file; the manifest is corrupted")
    p = root / entry["name"]
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise MemoryFormatError(f"{p}: cannot read the {what} file ({exc.strerror}); the save is incomplete") from None
    if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise MemoryFormatError(
            f"{p}: the {what} file is truncated or corrupted (size/sha256 differ from the manifest)"
        )
    return data


def read_manifest(path: str | os.PathLike[str]) -> tuple[Path, dict]:
    """(directory, manifest) of a saved memory; ``path`` is the directory or its MANIFEST.json."""
    p = Path(path)
    root, mpath = (p, p / MANIFEST) if p.is_dir() else (p.parent, p)
    if not mpath.is_file():
        raise MemoryFormatError(f"no saved memory at {p}: expected a directory written by ExperienceMemory.save()")
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MemoryFormatError(
            f"{mpath} is not a memory manifest (not valid JSON: {exc.__class__.__name__})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MemoryFormatError(f"{mpath} is not an rlem-gym memory manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise MemoryFormatError(
            f"{mpath} has format_version {version!r}; this rlem-gym reads version {FORMAT_VERSION}: "
            "load it with the rlem-gym that wrote it, or re-create the memory"
        )
    if not isinstance(manifest.get("files"), dict) or "records" not in manifest["files"]:
        raise MemoryFormatError(f"{mpath} lists no records file; the manifest is corrupted")
    return root, manifest


def _read_records(root: Path, manifest: dict) -> dict[str, Any]:
    rec_bytes = _read_checked(root, manifest["files"]["records"], "records")
    try:
        doc = json.loads(rec_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MemoryFormatError(f"{root}: the records file is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        raise MemoryFormatError(f"{root}: the records file has another format version than {FORMAT_VERSION}")
    return doc


def read_document(path: str | os.PathLike[str]) -> tuple[Path, dict, dict[str, Any]]:
    """(directory, manifest, records document) of a saved memory, checked but not turned into a memory.

    For tools that only read a save (the inspector): no embedder or matcher is needed. The document
    is the JSON written by :func:`memory_to_json`; errors raise :class:`~rlem_gym.memory.MemoryFormatError`.
    """
    root, manifest = read_manifest(path)
    doc = _read_records(root, manifest)
    if "vectors" in manifest["files"]:  # checked as a load checks it, so a corrupted save is refused here too
        _read_checked(root, manifest["files"]["vectors"], "vectors")
    return root, manifest, doc


def _check_embedder(root: Path, saved: Any, matcher: Matcher) -> bool:
    """True when saved vectors can be reused; raises when they come from another embedder."""
    emb = matcher.embedder
    if saved is None or emb is None:
        return False
    if not isinstance(saved, dict):
        raise MemoryFormatError(f"{root / MANIFEST}: bad embedder entry")
    if {k: saved.get(k) for k in ("name", "dim")} != embedder_identity(emb):
        raise EmbedderMismatchError(
            f"the memory at {root} was built with the embedder {saved.get('name')!r} ({saved.get('dim')}-d) but the "
            f"matcher uses {emb.name!r} ({emb.dim}-d): load it with "
            f"rlem_gym.memory.embeddings.load_embedder({saved.get('name')!r}), or rebuild the memory"
        )
    return True


def parse_table(raw: Any) -> dict[str, ActionStats]:
    """One saved action table (rows of ``action_fields``) as action -> :class:`~rlem_gym.memory.ActionStats`."""
    out = {}
    for a, q, visits, last_reward, reason in raw:
        out[str(a)] = ActionStats(float(q), int(visits), float(last_reward), str(reason))
    return out


def load_memory(path: str | os.PathLike[str], matcher: Matcher, *, factory: Callable[..., M], **overrides: Any) -> M:
    """Load a memory saved by :func:`save_memory` (see the module docstring for the checks).

    ``factory(matcher, **settings)`` builds the empty memory (:class:`~rlem_gym.memory.ExperienceMemory`
    or a subclass; :meth:`ExperienceMemory.load` passes its class).
    """
    root, manifest = read_manifest(path)
    reuse_vectors = _check_embedder(root, manifest.get("embedder"), matcher)
    doc = _read_records(root, manifest)
    vectors = None
    if reuse_vectors:
        if "vectors" not in manifest["files"]:
            raise MemoryFormatError(f"{root / MANIFEST}: an embedder is named but no vectors file is listed")
        vec_bytes = _read_checked(root, manifest["files"]["vectors"], "vectors")
        try:
            with np.load(io.BytesIO(vec_bytes), allow_pickle=False) as z:
                vectors = np.asarray(z["vectors"], dtype=np.float32)
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise MemoryFormatError(f"{root}: the vectors file is not a valid NPZ ({exc.__class__.__name__})") from None
    try:
        tasks = [str(t) for t in doc["tasks"]]
        if vectors is not None and (vectors.ndim != 2 or vectors.shape != (len(tasks), matcher.embedder.dim)):
            raise MemoryFormatError(
                f"{root}: vectors have shape {vectors.shape}, expected ({len(tasks)}, {matcher.embedder.dim})"
            )
        config = dict(doc["config"])
        config.update(overrides)
        if config.get("eviction") == "custom" or config.get("action_eviction") == "custom":
            raise MemoryFormatError(
                f"{root}: the memory used a custom eviction policy; pass eviction=/action_eviction= to load()"
            )
        memory = factory(matcher, **config)
        items = []
        for i, r in enumerate(doc["records"]):
            items.append(
                {
                    "situation": Situation(
                        task=tasks[r["task"]],
                        observation=str(r["observation"]),
                        instruction=str(r["instruction"]),
                        last_actions=tuple(str(a) for a in r["last_actions"]),
                        last_reward=float(r["last_reward"]),
                        total_reward=float(r["total_reward"]),
                        available_actions=tuple(str(a) for a in r["available_actions"]),
                    ),
                    "id": int(r["id"]),
                    "inserted_at": int(r["inserted_at"]),
                    "updated_at": int(r["updated_at"]),
                    "visits": int(r["visits"]),
                    "tables": [parse_table(t) for t in r["tables"]],
                }
            )
        vec_map = None if vectors is None else dict(zip(tasks, vectors))
        memory._bulk_insert(items, vec_map)
        memory._next_id = max(memory._next_id, int(doc["next_id"]))
        memory._tick = max(memory._tick, int(doc["tick"]))
        if "seed" not in overrides:
            memory.rng.bit_generator.state = doc["rng_state"]
    except MemoryFormatError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise MemoryFormatError(
            f"{root}: the records file does not match format {FORMAT_VERSION} ({exc.__class__.__name__}: {exc})"
        ) from None
    return memory
