"""The package layout, checked from the code's own imports.

* No module of the installed package (``rlem_gym`` with its envs, agents and benchmarks) imports
  another in a cycle, counting every import: module-level, inside functions (lazy) and under
  ``TYPE_CHECKING``.
* No module imports a ``_private`` name (or a ``_private`` module) from another package.
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
#: the installed package's parts that live in their own top-level folders (setup.cfg's package_dir)
PARTS = ("rlem_gym.envs", "rlem_gym.agents", "rlem_gym.benchmarks")


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


def _package_modules() -> dict[str, Path]:
    """Every module of the installed package: dotted name -> file (a package is its ``__init__.py``)."""
    import importlib

    roots = {"rlem_gym": ROOT, **{p: Path(importlib.import_module(p).__file__).parent for p in PARTS}}
    out: dict[str, Path] = {}
    for pkg, root in roots.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if pkg == "rlem_gym" and f"rlem_gym.{parts[0]}" in PARTS:
                continue  # a part's own folder is read from its package_dir
            name = ".".join((pkg, *parts))
            out[name.removesuffix(".__init__")] = path
    return out


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _import_edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports: ``from pkg import sub`` is the submodule ``sub``
    when there is one (else the package ``pkg``), ``import a.b.c`` the longest known prefix."""

    def known(dotted: str) -> str | None:
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in modules:
                return ".".join(parts[:i])
        return None

    package = _package_of(name, path)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(m for a in node.names if (m := known(a.name)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            for a in node.names:
                target = f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else known(mod)
                if target:
                    out.add(target)
    return out - {name}


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


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

    for name in (
        "ExperienceMemory",
        "MemoryFormatError",
        "EmbedderMismatchError",
        "import_official_pool",
        "MemoryKey",
        "ActionStats",
    ):
        assert hasattr(memory, name), name
    assert {p.stem for p in MEMORY.glob("*.py")} >= {
        "core",
        "records",
        "qlearning",
        "similarity",
        "index",
        "embeddings",
        "persistence",
        "pool_import",
        "inspect",
    }


def test_no_import_cycle_among_memory_modules():
    graph = _memory_graph()
    assert graph["core"] >= {"persistence", "pool_import", "qlearning", "similarity", "records"}, graph["core"]
    # only the package's __init__ may import the package's public names; a submodule importing
    # `rlem_gym.memory` itself would close a cycle through __init__, and the graph counts that
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle in rlem_gym.memory: " + " -> ".join(cycle)


def test_no_import_cycle_in_the_package():
    modules = _package_modules()
    assert {
        "rlem_gym.models",
        "rlem_gym.llm.factory",
        "rlem_gym.agents.rememberer",
        "rlem_gym.envs.webshop.env",
        "rlem_gym.benchmarks.runner",
    } <= set(modules)
    graph = {name: _import_edges(name, path, modules) for name, path in modules.items()}
    assert "rlem_gym.models" in graph["rlem_gym.llm.factory"]  # the LLM layer uses the model zoo, not the reverse
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_name_is_imported_from_another_package():
    modules = _package_modules()
    bad = []
    for name, path in sorted(modules.items()):
        mine = _package_of(name, path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if node.module not in modules:
                    continue  # not ours
                theirs = _package_of(node.module, modules[node.module])
                names = [a.name for a in node.names if _is_private(a.name)]
                names += [node.module] if any(map(_is_private, node.module.split("."))) else []
                if names and theirs != mine:
                    bad.append(f"{name} imports {', '.join(names)} from {node.module}")
            elif isinstance(node, ast.Import):
                bad += [
                    f"{name} imports {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] == "rlem_gym" and any(map(_is_private, a.name.split(".")))
                ]
    assert not bad, "\n".join(bad)


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
