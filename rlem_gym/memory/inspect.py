"""Browse a saved experience memory: records, Q tables, visit counts, text search, an HTML report.

``rlem-gym memory inspect PATH`` prints it; ``--html OUT`` also writes a self-contained page with a
search box. The memory is read from its saved JSON (checked against the manifest's sha256), so no
embedder or LLM is loaded.
"""

from __future__ import annotations

import html as htmlmod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlem_gym.atomic import atomic_write_text
from rlem_gym.memory.persistence import parse_table, read_document
from rlem_gym.memory.records import MemoryFormatError, merge_tables
from rlem_gym.trajectory import Situation


@dataclass(frozen=True)
class ActionRow:
    """One entry of a record's action table (merged over double-Q tables as the memory merges them)."""

    action: str
    q: float
    visits: int
    last_reward: float
    reason: str


@dataclass(frozen=True)
class RecordView:
    """What the inspector shows of one record."""

    id: int
    situation: Situation
    """The situation of the record's latest visit (its key and prompt context)."""
    visits: int
    inserted_at: int
    actions: tuple[ActionRow, ...]
    """Sorted by Q, highest first."""

    def text(self) -> str:
        """All searchable text of the record, lower-cased."""
        sit = self.situation
        parts = [sit.task, sit.observation, sit.instruction, *sit.last_actions]
        parts += [a.action for a in self.actions] + [a.reason for a in self.actions]
        return "\n".join(parts).lower()


def read_saved_memory(path: str | Path) -> tuple[dict[str, Any], list[RecordView]]:
    """(header, records) of a memory directory written by ``ExperienceMemory.save``."""
    root, manifest, doc = read_document(path)
    try:
        tasks = doc["tasks"]
        views = []
        for r in doc["records"]:
            table = merge_tables([parse_table(t) for t in r["tables"]])  # one table: itself
            actions = [ActionRow(a, s.q, s.visits, s.last_reward, s.reason) for a, s in table.items()]
            actions.sort(key=lambda a: (-a.q, a.action))
            views.append(
                RecordView(
                    id=int(r["id"]),
                    situation=Situation(
                        task=tasks[r["task"]],
                        observation=r["observation"],
                        instruction=r.get("instruction", ""),
                        last_actions=tuple(r.get("last_actions", ())),
                        last_reward=float(r.get("last_reward", 0.0)),
                        total_reward=float(r.get("total_reward", 0.0)),
                    ),
                    visits=int(r["visits"]),
                    inserted_at=int(r.get("inserted_at", 0)),
                    actions=tuple(actions),
                )
            )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MemoryFormatError(f"{path}: the records file is not in the expected layout ({exc})") from None
    header = {
        "path": str(root),
        "records": len(views),
        "matcher": doc.get("matcher"),
        "config": doc.get("config", {}),
        "embedder": manifest.get("embedder"),
    }
    return header, views


def search_records(records: list[RecordView], text: str | None) -> list[RecordView]:
    """Records whose task, observation, instruction, actions or reasons contain ``text`` (any case)."""
    if not text:
        return list(records)
    needle = text.lower()
    return [r for r in records if needle in r.text()]


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def format_text(header: dict[str, Any], records: list[RecordView], *, total: int, limit: int, query: str | None) -> str:
    """The terminal listing: a header, then each record with its Q table."""
    cfg = header.get("config") or {}
    matcher = header.get("matcher") or {}
    lines = [
        f"memory {header['path']}: {total} records (capacity {cfg.get('capacity', '?')}, "
        f"actions/record {cfg.get('action_capacity', '?')}), matcher {matcher.get('name', '?') if isinstance(matcher, dict) else matcher}, "
        f"n_step {cfg.get('n_step')}, gamma {cfg.get('gamma')}, update {cfg.get('update_mode')}, learning {cfg.get('learning', 'q_learning')}",
    ]
    if query:
        lines.append(f"{len(records)} records match {query!r}")
    shown = records if limit <= 0 else records[:limit]
    for r in shown:
        sit = r.situation
        lines.append("")
        lines.append(f"#{r.id}  visits {r.visits}  inserted {r.inserted_at}  total reward {sit.total_reward:g}")
        lines.append(f"  task: {_short(sit.task, 110)}")
        if sit.instruction:
            lines.append(f"  instruction: {_short(sit.instruction, 100)}")
        lines.append(f"  observation: {_short(sit.observation, 100)}")
        if sit.last_actions:
            lines.append(f"  last actions: {', '.join(sit.last_actions)}")
        lines.append("  Q table (action -> Q, visits, last reward, reason):")
        for a in r.actions:
            lines.append(f"    {a.action} -> {a.q:.2f}  n={a.visits}  r={a.last_reward:g}  {_short(a.reason, 60)}")
    if len(shown) < len(records):
        lines.append(f"\n… {len(records) - len(shown)} more (use --limit 0 for all, --search TEXT to filter)")
    return "\n".join(lines)


_HTML_HEAD = """<!doctype html><html><head><meta charset="utf-8"><title>rlem-gym memory</title>
<style>body{font-family:sans-serif;margin:1.5em;max-width:70em}
.rec{border:1px solid #ccc;border-radius:6px;padding:.6em;margin:.6em 0}
.obs{white-space:pre-wrap;font-family:monospace;font-size:.8em;max-height:12em;overflow:auto;background:#f7f7f7;padding:.4em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px;font-size:.9em}
.pos{color:#1b7a3a}.neg{color:#b3261e}#q{width:30em;padding:.3em}</style></head><body>
"""
_HTML_SCRIPT = """<script>
const q=document.getElementById('q');q.addEventListener('input',()=>{const t=q.value.toLowerCase();let n=0;
document.querySelectorAll('.rec').forEach(e=>{const s=e.textContent.toLowerCase().includes(t);e.style.display=s?'':'none';n+=s;});
document.getElementById('n').textContent=n;});</script></body></html>
"""


def format_html(header: dict[str, Any], records: list[RecordView]) -> str:
    """A self-contained HTML page of every record, with a live text filter."""
    e = htmlmod.escape
    cfg = header.get("config") or {}
    out = [
        _HTML_HEAD,
        f"<h1>Experience memory</h1><p>{e(header['path'])}: {len(records)} records; "
        f"settings: {e(', '.join(f'{k}={v}' for k, v in cfg.items()))}</p>",
        f'<p><input id="q" placeholder="filter by text (task, page, action, reason)"> <span id="n">{len(records)}</span> shown</p>',
    ]
    for r in records:
        rows = "".join(
            f"<tr><td>{e(a.action)}</td><td class='{'pos' if a.q > 0 else 'neg'}'>{a.q:.2f}</td><td>{a.visits}</td>"
            f"<td>{a.last_reward:g}</td><td>{e(a.reason)}</td></tr>"
            for a in r.actions
        )
        sit = r.situation
        out.append(
            f"<div class='rec'><b>#{r.id}</b> visits {r.visits} · inserted {r.inserted_at} · total reward {sit.total_reward:g}"
            f"<br><b>task</b>: {e(sit.task)}"
            + (f"<br><b>instruction</b>: {e(sit.instruction)}" if sit.instruction else "")
            + (f"<br><b>last actions</b>: {e(', '.join(sit.last_actions))}" if sit.last_actions else "")
            + f"<div class='obs'>{e(sit.observation)}</div>"
            f"<table><tr><th>action</th><th>Q</th><th>visits</th><th>last reward</th><th>reason</th></tr>{rows}</table></div>"
        )
    out.append(_HTML_SCRIPT)
    return "".join(out)


def _refuse_run_folder(path: Path) -> None:
    """A run folder is not a memory: name the memories it holds instead of saying "no saved memory"."""
    if not (path.is_dir() and (path / "config.json").is_file() and not (path / "MANIFEST.json").exists()):
        return
    found = sorted(str(m.parent) for m in path.glob("memory_*/memory/MANIFEST.json"))
    if found:
        raise MemoryFormatError(
            f"{path} is a run folder, not a memory: inspect one of its memories, "
            f"e.g. {found[0]} ({len(found)} in all: {', '.join(found)})"
        )
    raise MemoryFormatError(
        f"{path} is a run folder that holds no saved memory yet: a Rememberer's memory "
        f"appears as {path / 'memory_seed0' / 'memory'} once its training is done"
    )


def inspect_memory(
    path: str | Path,
    *,
    search: str | None = None,
    limit: int = 20,
    html: str | Path | None = None,
    record_id: int | None = None,
) -> str:
    """The text listing of a saved memory (optionally filtered); also writes ``html`` when given."""
    _refuse_run_folder(Path(path))
    header, records = read_saved_memory(path)
    chosen = search_records(records, search)
    if record_id is not None:
        chosen = [r for r in chosen if r.id == record_id]
        if not chosen:
            raise MemoryFormatError(f"no record with id {record_id} in {path}: the ids are listed without --record")
    text = format_text(header, chosen, total=len(records), limit=limit, query=search)
    if html:
        try:
            atomic_write_text(html, format_html(header, chosen))
        except OSError as exc:
            raise MemoryFormatError(
                f"--html {html}: cannot write the report ({exc.strerror or exc}): pass a path in a writable folder"
            ) from None
        text += f"\n\nwrote {html} ({len(chosen)} records)"
    return text
