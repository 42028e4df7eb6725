"""On-disk cache of GGUF weights dequantised by transformers, so a process loads them in seconds.

transformers reads a GGUF file with a pure-Python parser, once for the tokenizer, once for the
config and once for the weights, then dequantises every tensor to fp32: about a minute for the
135M SmolLM2 on 2 CPU cores, paid again by every new process (each CLI run, each Ray worker).
The first load of a local GGUF file therefore also writes the dequantised model and its
tokenizer with ``save_pretrained`` (safetensors, fp32: the same numbers, bit for bit) under

    ``$RLEM_GYM_DEQUANT_CACHE``, else ``<model cache>/hf-dequantized`` (see
    :func:`rlem_gym.models.model_cache_dir`),

and later loads read that folder instead. ``RLEM_GYM_DEQUANT_CACHE=0`` turns the cache off. The
folder costs 4 bytes per parameter on disk (about 0.5 GB for SmolLM2-135M, 2 GB for a 0.5B model).

An entry is keyed by the GGUF file's absolute path, size and modification time and by the
transformers version (which decides the dequantisation); a changed file or an upgrade gets a new
entry. An entry is built in a temporary folder and appears under its final name only by a
rename after its files are synced, with ``rlem-gym.json`` written last, so a killed process
leaves no half entry that a later one would read. Writing is best effort: on a full disk the
model is still returned and the cache is skipped with a warning.

The cache is bounded. Each new entry removes the entries whose GGUF file is gone or has changed
since (they can never be read again), then the least recently used entries until the cache holds
at most ``$RLEM_GYM_DEQUANT_CACHE_MAX_GB`` gigabytes (default 20; the new entry is always kept).
A lookup marks its entry as used.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from rlem_gym.atomic import fsync_dir

#: environment variable: a folder for the cache, or ``0`` to turn it off
DEQUANT_CACHE_ENV = "RLEM_GYM_DEQUANT_CACHE"
#: the file that marks a complete entry and says what it was built from
MARKER = "rlem-gym.json"
FORMAT_VERSION = 1
#: environment variable: the most gigabytes (10**9 bytes) the cache keeps; least recently used entries go first
DEQUANT_CACHE_MAX_GB_ENV = "RLEM_GYM_DEQUANT_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0
#: temporary build folders older than this are from killed processes and are removed
_STALE_AFTER_S = 3600.0


def cache_root() -> Path | None:
    """The cache folder, or None when ``RLEM_GYM_DEQUANT_CACHE=0``."""
    value = os.environ.get(DEQUANT_CACHE_ENV, "").strip()
    if value == "0":
        return None
    if value:
        return Path(value).expanduser()
    from rlem_gym.models import model_cache_dir

    return model_cache_dir() / "hf-dequantized"


def _source(model: str, gguf_file: str) -> dict[str, Any] | None:
    """What an entry for ``model/gguf_file`` must match; None when the GGUF is not a local file."""
    path = Path(model).expanduser() / gguf_file
    try:
        st = path.resolve().stat()
    except OSError:
        return None  # a hub id: transformers downloads and keeps it; nothing local to key on
    import transformers

    return {
        "format": FORMAT_VERSION,
        "gguf": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "transformers": transformers.__version__,
    }


def _entry(root: Path, source: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return root / f"{Path(source['gguf']).stem}-{digest}"


def lookup(model: str, gguf_file: str) -> Path | None:
    """The complete cache entry for this GGUF file, or None."""
    root, source = cache_root(), _source(model, gguf_file)
    if root is None or source is None:
        return None
    entry = _entry(root, source)
    try:
        marker = json.loads((entry / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker != source:
        return None
    try:
        os.utime(entry / MARKER)  # last use, for the size cap's eviction order
    except OSError:
        pass
    return entry


def max_bytes() -> int:
    """The cache's size cap in bytes, from ``$RLEM_GYM_DEQUANT_CACHE_MAX_GB`` (default 20 GB)."""
    value = os.environ.get(DEQUANT_CACHE_MAX_GB_ENV, "").strip()
    try:
        gigabytes = float(value) if value else DEFAULT_MAX_GB
    except ValueError:
        raise ValueError(f"{DEQUANT_CACHE_MAX_GB_ENV} must be a number of gigabytes, got {value!r}") from None
    if not gigabytes >= 0:
        raise ValueError(f"{DEQUANT_CACHE_MAX_GB_ENV} must be >= 0, got {value!r}")
    return int(gigabytes * 1e9)


def _is_current(marker: dict[str, Any]) -> bool:
    """Whether the GGUF file an entry was built from still exists unchanged."""
    try:
        st = Path(marker["gguf"]).stat()
        return st.st_size == marker["size"] and st.st_mtime_ns == marker["mtime_ns"]
    except (OSError, KeyError, TypeError):
        return False


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prune(root: Path, keep: Path | None = None, cap: int | None = None) -> list[Path]:
    """Remove dead entries, then least recently used ones above ``cap`` bytes (default
    :func:`max_bytes`); the removed entries.

    ``keep`` (the entry just stored) is never removed. Folders without a readable marker are left
    alone: they may be a build or a removal in progress by another process.
    """
    entries = []  # (last use, bytes, folder)
    removed = []
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.name.startswith(".") or not folder.is_dir() or folder == keep:
            continue
        try:
            marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
            last_use = (folder / MARKER).stat().st_mtime
        except (OSError, ValueError):
            continue
        if not isinstance(marker, dict) or not _is_current(marker):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        else:
            entries.append((last_use, _folder_bytes(folder), folder))
    total = sum(size for _, size, _ in entries) + (_folder_bytes(keep) if keep is not None else 0)
    cap = max_bytes() if cap is None else cap
    for _, size, folder in sorted(entries, key=lambda e: e[0]):  # least recently used first
        if total <= cap:
            break
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
        total -= size
    return removed


def discard(entry: Path) -> None:
    """Remove an entry that failed to load, so the next load rebuilds it."""
    shutil.rmtree(entry, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def _remove_stale_builds(root: Path) -> None:
    now = time.time()
    for tmp in root.glob(".build-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_AFTER_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def _save_model(lm: Any, folder: Path) -> None:
    """Write ``lm``'s config, generation config and weights as a plain (unquantised) checkpoint.

    ``save_pretrained`` refuses a GGUF-loaded model (its config names the GGUF quantiser), so the
    config is written without ``quantization_config`` and the tensors with safetensors. A tensor
    that shares its storage with one already written (the output layer of tied embeddings) is
    left out: ``from_pretrained`` ties it again.
    """
    import copy

    from safetensors.torch import save_file

    config = copy.deepcopy(lm.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    if getattr(lm, "generation_config", None) is not None:
        lm.generation_config.save_pretrained(folder)
    state: dict[str, Any] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, tensor in lm.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        state[name] = tensor.detach().contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def store(model: str, gguf_file: str, lm: Any, tokenizer: Any) -> Path | None:
    """Write the fp32 model and tokenizer just loaded from ``model/gguf_file``; the entry, or None.

    Call it before casting ``lm`` to another dtype. Never raises for a failed write: it warns and
    returns None (the caller already has the model).
    """
    root, source = cache_root(), _source(model, gguf_file)
    if root is None or source is None:
        return None
    cap = max_bytes()  # read first: a bad setting is the user's error to see, not a write failure to warn about
    entry = _entry(root, source)
    tmp = root / f".build-{entry.name}-{secrets.token_hex(4)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(root)
        tmp.mkdir()
        tokenizer.save_pretrained(tmp)
        _save_model(lm, tmp)
        (tmp / MARKER).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        if lookup(model, gguf_file) is not None:  # another process stored it meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return entry
        if entry.exists():  # an entry without its marker (a failed removal): replace it
            shutil.rmtree(entry)
        os.rename(tmp, entry)
        fsync_dir(root)
        prune(root, keep=entry, cap=cap)
        return entry
    except (OSError, ValueError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if lookup(model, gguf_file) is not None:  # another process stored it first
            return entry
        warnings.warn(
            f"could not cache the dequantised weights of {source['gguf']} under {root}: {exc} "
            f"(the model is loaded; set {DEQUANT_CACHE_ENV}=0 to skip the cache)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
