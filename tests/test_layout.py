"""The package layout, checked from the code's own imports.

* No module of ``rlem_gym.memory`` imports another in a cycle, counting every import: module-level,
  inside functions (lazy) and under ``TYPE_CHECKING``.
* The core (``rlem_gym`` without its CLI) imports no benchmark, agent or env module: those use
  the core, never the reverse.
* ``import rlem_gym`` and ``import rlem_gym.memory`` load neither torch nor transformers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rlem_gym

ROOT = Path(rlem_gym.__file__).parent
MEMORY = ROOT / "memory"


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module name ``path`` imports, anywhere in the file (``from pkg import sub`` counts as pkg.sub too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _memory_graph() -> dict[str, set[str]]:
    """module -> the memory modules it imports; a public name taken from the package counts as ``__init__``."""
    names = {p.stem for p in MEMORY.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in names:
        deps = set()
        mods = _imported_modules(MEMORY / f"{name}.py", "rlem_gym.memory")
        for mod in mods:
            if mod.startswith("rlem_gym.memory."):
                sub = mod.split(".")[2]
                # `from rlem_gym.memory import persistence` imports a submodule; `... import ExperienceMemory` the package
                deps.add(sub if sub in names else "__init__")
        graph[name] = deps - {name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (cyc := visit(m)):
                return cyc
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cyc := visit(n)):
            return cyc
    return None


def test_memory_is_a_package_with_the_documented_api():
    import rlem_gym.memory as memory

    for name in ("ExperienceMemory", "MemoryFormatError", "EmbedderMismatchError", "import_official_pool", "MemoryKey", "ActionStats"):
        assert hasattr(memory, name), name
    assert {p.stem for p in MEMORY.glob("*.py")} >= {
        "core", "records", "qlearning", "similarity", "index", "embeddings", "persistence", "pool_import", "inspect"
    }


def test_no_import_cycle_among_memory_modules():
    graph = _memory_graph()
    assert graph["core"] >= {"persistence", "pool_import", "qlearning", "similarity", "records"}, graph["core"]
    # only the package's __init__ may import the package's public names; a submodule importing
    # `rlem_gym.memory` itself would close a cycle through __init__, and the graph counts that
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle in rlem_gym.memory: " + " -> ".join(cycle)


def test_cycle_check_sees_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_imports_no_benchmark_agent_or_env():
    banned = ("rlem_gym.benchmarks", "rlem_gym.agents", "rlem_gym.envs")
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("cli.py", "registration.py"):  # the CLI drives the runner; registration names the env ids
            continue
        pkg = "rlem_gym." + ".".join(rel.with_suffix("").parts[:-1]) if len(rel.parts) > 1 else "rlem_gym"
        bad = sorted(m for m in _imported_modules(path, pkg.rstrip(".")) if m.startswith(banned))
        assert not bad, f"{rel} imports {bad}"


def test_imports_load_no_torch():
    code = (
        "import sys, rlem_gym, rlem_gym.memory; "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'faiss') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
