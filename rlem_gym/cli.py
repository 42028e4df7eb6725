"""The ``rlem-gym`` command line: bench, demo, memory inspect, plot.

- ``rlem-gym demo``: the README's main job (preset ``demo``): train the Rememberer briefly, test it
  and the two baselines on the same goals, print the side-by-side table, write the plots.
- ``rlem-gym bench [--preset NAME] --env ... --agents ... --llm ... --out runs/NAME``: any
  configuration; every :class:`rlem_gym.benchmarks.config.BenchConfig` field is a flag, and its docstring is
  the flag's help. Rerunning the same command resumes the run folder.
- ``rlem-gym memory inspect PATH [--search TEXT] [--html OUT]``: browse a saved memory.
- ``rlem-gym plot RUN_DIR``: rebuild results and figures from a run's records.
- ``rlem-gym models [--json]``: the model zoo (installed or not, size, measured prefill/decode tok/s).

Without ``--llm`` a command uses the best installed zoo model that can act (Qwen2.5-Coder-0.5B on
llama.cpp when the ``qwen-0-5b`` and ``llamacpp`` extras are installed) and says in one line what it
picked instead, or what to install. ``rlem-gym bench --dry-run`` prints the plan and its projected
wall time and runs nothing.

Expected failures (bad arguments, missing data, an unreachable model, an unwritable path) end with
one line on stderr saying what to do, and exit status 2; an interrupted run says how to resume
(status 130 after Ctrl-C, 143 after SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from rlem_gym.benchmarks.config import BenchConfig, ConfigError, field_docs, field_kind

PROG = "rlem-gym"


# --------------------------------------------------------------------------------------------
# BenchConfig <-> argparse
# --------------------------------------------------------------------------------------------
def _parse_optional(conv: Any) -> Any:
    def parse(text: str) -> Any:
        if text.strip().lower() in ("none", "null", ""):
            return None
        return conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _agent_labels(text: str) -> tuple[str, ...]:
    """``--agents``: comma-separated variant labels; commas inside ``[...]`` belong to a label."""
    from rlem_gym.agents.variants import VariantError, split_agent_list

    try:
        return tuple(split_agent_list(text))
    except VariantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


_SPECIAL_TYPES = {"seeds": _csv_ints, "agents": _agent_labels}
#: fields with a hand-written CLI form
_CUSTOM = {"ray"}


def add_config_arguments(parser: argparse.ArgumentParser, cls: type = BenchConfig) -> None:
    """One ``--flag`` per dataclass field; help = the field's docstring; defaults are SUPPRESSed
    so that only flags the user typed override the preset."""
    docs = field_docs(cls)
    defaults = cls()
    group = parser.add_argument_group("benchmark settings (BenchConfig fields)")
    for f in dataclasses.fields(cls):
        if f.name in _CUSTOM:
            continue
        flag = "--" + f.name.replace("_", "-")
        base, optional = field_kind(cls, f.name)
        default = getattr(defaults, f.name)
        shown = (
            ",".join(map(str, default))
            if isinstance(default, tuple)
            else json.dumps(default)
            if isinstance(default, dict)
            else default
        )
        help_text = f"{docs.get(f.name, '')} (default: {shown})".replace("%", "%%")
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
            continue
        if f.name in _SPECIAL_TYPES:
            conv = _SPECIAL_TYPES[f.name]
        elif base is dict:
            conv = _json_object
        elif base in (int, float, str):
            conv = base
        else:  # pragma: no cover - every field is covered above
            raise TypeError(f"no CLI form for field {f.name} of type {base}")
        if optional:
            conv = _parse_optional(conv)
        metavar = {
            "seeds": "0,1,2",
            "agents": "A,B",
            "env_kwargs": "JSON",
            "agent_kwargs": "JSON",
            "llm_kwargs": "JSON",
        }.get(f.name)
        group.add_argument(flag, type=conv, default=argparse.SUPPRESS, help=help_text, metavar=metavar)
    group.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=argparse.SUPPRESS,
        metavar="ADDRESS",
        help=docs.get("ray", "") + " Without ADDRESS: a local ray.init().",
    )


def config_from_args(args: argparse.Namespace, base: BenchConfig) -> BenchConfig:
    """``base`` with every BenchConfig flag the user gave applied, validated."""
    names = {f.name for f in dataclasses.fields(BenchConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    for key in ("env_kwargs", "agent_kwargs", "llm_kwargs"):  # JSON flags add to the preset's dicts
        if key in given:
            given[key] = {**getattr(base, key), **given[key]}
    return base.replace(**given).validate()


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------
def _fresh(out: Path) -> None:
    """Delete what an earlier run wrote into ``out`` (only rlem-gym's own files)."""
    import shutil

    if not out.exists():
        return
    if not (out / "config.json").exists():
        raise ConfigError(f"--fresh: {out} is not an rlem-gym run folder (no config.json); refusing to delete it")
    shutil.rmtree(out)


def _run(cfg: BenchConfig, *, fresh: bool, title: str, model_note: str | None = None) -> int:
    from rlem_gym.benchmarks.runner import default_run_dir
    from rlem_gym.benchmarks.sweep import run_sweep, split_llm_specs, sweep_markdown

    specs = split_llm_specs(cfg.llm)
    if len(specs) == 1:
        return _run_one(cfg, fresh=fresh, title=title, model_note=model_note)[0]
    # a model sweep: the same protocol per model, one model in memory at a time, one table
    out = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    codes: list[int] = []

    def run_one(sub: BenchConfig) -> dict[str, Any]:
        rc, results = _run_one(sub, fresh=fresh, title=f"{title} [{sub.llm}]")
        codes.append(rc)
        return results

    t0 = time.perf_counter()
    sweep = run_sweep(cfg.replace(out=str(out)), specs, run_one=run_one)
    print(f"\n{title}: model sweep over {len(specs)} models, {cfg.env}, test {cfg.test_split}")
    print(sweep_markdown(sweep))
    print(
        f"\nwall time {time.perf_counter() - t0:.0f} s; sweep folder {out}: sweep_results.md/.csv/.json, "
        "sweep_scores.png, one run folder per model"
    )
    return max(codes)


def _run_one(cfg: BenchConfig, *, fresh: bool, title: str, model_note: str | None = None) -> tuple[int, dict[str, Any]]:
    from rlem_gym.benchmarks.report import curve_table, markdown_table, paired_table
    from rlem_gym.benchmarks.runner import Runner, default_run_dir

    out = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    cfg = cfg.replace(out=str(out))
    if fresh:
        _fresh(out)
    t0 = time.perf_counter()
    runner = Runner(cfg, model_note=model_note)
    results = runner.run()
    wall = time.perf_counter() - t0
    prog = results["progress"]
    print(
        f"\n{title}: {cfg.env}, model {cfg.model_label}, "
        f"seeds {','.join(map(str, cfg.seeds))}, test {cfg.test_split} "
        f"({prog['test_episodes_done']}/{prog['test_episodes_expected']} episodes, {prog['failed']} failed)"
    )
    print(markdown_table(results))
    paired = paired_table(results)
    if paired:
        print(f"\nPaired differences from {results['paired']['reference']} (same goals; paired bootstrap 95% CI):")
        print(paired)
    curve = curve_table(results)
    if curve:
        print("\nRememberer training (memory updates on):")
        print(curve)
    print(
        f"\nwall time {wall:.0f} s; run folder {out}: results.md/.csv/.json, scores.png"
        + (", learning_curve.png" if curve else "")
        + ", episodes.jsonl, config.json"
    )
    return (0 if prog["failed"] == 0 else 1), results


def _dry_run(cfg: BenchConfig, model_note: str | None = None) -> int:
    """Print the plan (episodes per phase and agent) and its projected wall time; run nothing."""
    from rlem_gym.benchmarks.estimate import format_projection
    from rlem_gym.benchmarks.runner import Runner, default_run_dir
    from rlem_gym.benchmarks.sweep import model_slug, split_llm_specs

    specs = split_llm_specs(cfg.llm)
    root = Path(cfg.out) if cfg.out else None
    for spec in specs:
        sub = cfg.replace(llm=spec)
        if len(specs) > 1:
            sub = sub.replace(out=str((root or default_run_dir(cfg)) / model_slug(spec)))
        runner = Runner(sub, model_note=model_note)
        proj = runner.projection()
        c = runner.cfg
        resumed = runner.run_dir.config_path.exists()
        print(
            f"{PROG} bench --dry-run: {c.env}, model {c.model_label}, seeds {','.join(map(str, c.seeds))}, "
            f"train {c.train_split} x {c.epochs} epochs, test {c.test_split}, at most {c.max_steps} steps per episode; "
            f"run folder {c.out}" + (" (exists: finished episodes are not counted)" if resumed else "")
        )
        print(format_projection(proj) + "\n")
    print("nothing was run; drop --dry-run to start")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rlem_gym.benchmarks.presets import get_preset

    base = BenchConfig()
    if args.preset:
        try:
            base = get_preset(args.preset)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    cfg, note = config_from_args(args, base).with_default_llm()  # the note is said once the splits are valid
    if args.dry_run:
        return _dry_run(cfg, note)
    return _run(cfg, fresh=args.fresh, title="rlem-gym bench", model_note=note)


DEMO_NOTE = """\
What this demo shows: the whole protocol end to end on the WebShop small catalog with
Qwen2.5-Coder-0.5B and constrained action decoding (every action the model writes is valid): the
Rememberer starts from the official initial pool E0 and trains with memory updates, then it, its
untrained copy (E0 only), ReAct and the static-exemplar agent play the same held-out goals with the
memory frozen, beside the LLM-free heuristic (floor) and oracle (ceiling); the table carries 95%
bootstrap CIs and paired differences from the trained Rememberer.
What it does not show: which agent is better. 3 test goals give intervals far too wide for that;
the study in docs/study/README.md runs the paper's protocol on 50 WebShop and 70 WikiHow goals."""


def cmd_demo(args: argparse.Namespace) -> int:
    from rlem_gym.benchmarks.presets import get_preset

    cfg = get_preset("demo")
    changes: dict[str, Any] = {}
    for name in ("llm", "out", "workers"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.no_progress:
        changes["progress"] = False
    cfg = cfg.replace(**changes).validate()
    rc = _run(cfg, fresh=args.fresh, title="rlem-gym demo")
    print("\n" + DEMO_NOTE)
    return rc


def cmd_plot(args: argparse.Namespace) -> int:
    from rlem_gym.benchmarks.report import markdown_table
    from rlem_gym.benchmarks.runner import rerender

    results = rerender(args.run_dir)
    print(markdown_table(results))
    pngs = sorted(p.name for p in Path(args.run_dir).glob("*.png"))
    print(f"\nrewrote results.md/.csv/.json and {', '.join(pngs)} in {args.run_dir}")
    return 0


def cmd_memory_inspect(args: argparse.Namespace) -> int:
    from rlem_gym.memory.inspect import inspect_memory

    text = inspect_memory(args.path, search=args.search, limit=args.limit, html=args.html, record_id=args.record)
    print(text)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from rlem_gym.models import format_zoo, load_zoo_speeds, zoo_status

    speeds = load_zoo_speeds()
    rows = zoo_status(speeds=speeds)
    if args.json:
        print(
            json.dumps({"models": rows, "speeds_source": {k: v for k, v in speeds.items() if k != "models"}}, indent=2)
        )
    else:
        print(format_zoo(rows, speeds))
    return 0


# --------------------------------------------------------------------------------------------
# parser and entry point
# --------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format used by every rlem-gym failure."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Rememberer (RLEM) agents and side-by-side LLM-agent benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    bench = sub.add_parser(
        "bench",
        help="train the Rememberer, test every agent on the same goals, print the table",
        description="Run a benchmark (the paper's protocol). Rerunning the same command resumes it.",
    )
    bench.add_argument("--preset", help="start from a preset: demo, paper-webshop, paper-wikihow (flags override it)")
    bench.add_argument("--fresh", action="store_true", help="delete the run folder's earlier results first")
    bench.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (episodes per phase and agent) and its projected wall time; run nothing",
    )
    add_config_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    demo = sub.add_parser(
        "demo",
        help="the README demo: a short WebShop run with Qwen2.5-Coder-0.5B (the qwen-0-5b extra)",
        description=DEMO_NOTE,
    )
    demo.add_argument(
        "--llm",
        default=None,
        help="model spec (default: qwen2.5-coder-0.5b from the zoo; llama.cpp when installed, else HF)",
    )
    demo.add_argument("--out", default=None, help="run folder (default runs/demo; rerunning resumes it)")
    demo.add_argument("--workers", type=int, default=None, help="local processes for the test phase")
    demo.add_argument("--fresh", action="store_true", help="start over instead of resuming runs/demo")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    demo.set_defaults(func=cmd_demo)

    mem = sub.add_parser("memory", help="work with saved experience memories")
    mem_sub = mem.add_subparsers(dest="memory_command", metavar="ACTION", parser_class=_Parser)
    mem_sub.required = True
    insp = mem_sub.add_parser("inspect", help="list records, Q tables and visits; search by text; --html report")
    insp.add_argument("path", help="a memory saved by rlem-gym (e.g. runs/demo/memory_seed0/memory)")
    insp.add_argument(
        "--search", default=None, help="show only records whose task, observation or actions contain TEXT"
    )
    insp.add_argument("--record", type=int, default=None, help="show only the record with this id")
    insp.add_argument("--limit", type=int, default=20, help="records to print (default 20; 0 = all)")
    insp.add_argument("--html", default=None, metavar="OUT.html", help="also write a browsable HTML report")
    insp.set_defaults(func=cmd_memory_inspect)

    plot = sub.add_parser("plot", help="rebuild results.md/csv/json and the PNGs of a run from its records")
    plot.add_argument("run_dir", help="the run folder (the --out of a bench run)")
    plot.set_defaults(func=cmd_plot)

    models = sub.add_parser(
        "models",
        help="list the model zoo: installed or not, size, measured tok/s",
        description="The small instruct models that PyPI packages ship (use a name with --llm). "
        "Speeds come from `python -m rlem_gym.benchmarks.perf.bench_llm --zoo`.",
    )
    models.add_argument("--json", action="store_true", help="print the listing as JSON")
    models.set_defaults(func=cmd_models)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The failures that end with one line on stderr (imported only when something failed)."""
    from rlem_gym.benchmarks.runner import RunError
    from rlem_gym.llm.base import LLMError
    from rlem_gym.models import ModelIntegrityError, ModelNotFoundError

    errors: list[type[BaseException]] = [ConfigError, RunError, LLMError, ModelNotFoundError, ModelIntegrityError]
    try:
        from rlem_gym.memory import MemoryFormatError

        errors.append(MemoryFormatError)
    except ImportError:  # pragma: no cover - the memory module is part of the package
        pass
    return tuple(errors)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is so that it stops through the resumable path."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def interrupt_on_sigterm() -> None:
    """Make SIGTERM stop a command the way Ctrl-C does (the run folder stays resumable). A job started
    in the background (``cmd &``) ignores SIGINT, so ``kill <pid>`` is how such a run is stopped."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``rlem-gym``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    interrupt_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Terminated) else 130  # the shell's codes: 143 = SIGTERM
    except Exception as exc:
        if not isinstance(exc, _expected_errors()):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
