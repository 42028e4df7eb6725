"""A model's chat template, rendered on the client side (for servers that cannot prefill a reply).

The OpenAI-compatible backend uses it for ``prefill="completions"``: the prompt is put through the
model's own chat template here and sent to the server's ``/completions`` endpoint with the
``response_prefix`` after the generation prompt, so the reply really starts with the cue.

Where the template comes from (:func:`load_chat_template`):

- a ``.gguf`` file: its ``tokenizer.chat_template`` metadata and its BOS/EOS token texts, read by a
  small metadata-only reader (no tensor is touched, unlike ``gguf.GGUFReader``, which indexes them all);
- a HF tokenizer directory or id (``transformers.AutoTokenizer``, local files only);
- a Jinja file (``.jinja`` / ``.j2``): the template text alone;
- the server: ``/props`` of llama.cpp's ``llama-server`` (see :class:`ChatTemplate.from_props`).

Rendering follows transformers' own (a sandboxed Jinja2 environment with ``trim_blocks`` and
``lstrip_blocks``, ``raise_exception``, ``strftime_now`` and a ``tojson`` filter that keeps
non-ASCII characters), so a template renders the text the model was trained on.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Iterable

# GGUF value types (gguf.GGUFValueType) and the struct format of the scalar ones
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_TOKENS_KEY = "tokenizer.ggml.tokens"


def read_gguf_metadata(path: str | Path, keys: Iterable[str]) -> dict[str, Any]:
    """The values of ``keys`` in a GGUF file's metadata (absent keys are left out).

    Reads the header and key/value section only, in one pass. Arrays are returned as lists.
    """
    wanted = set(keys)
    out: dict[str, Any] = {}
    with open(path, "rb", buffering=1 << 20) as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (bad magic)")
        (version,) = struct.unpack("<I", f.read(4))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is too old (2 or later is read)")
        _n_tensors, n_kv = struct.unpack("<QQ", f.read(16))
        for _ in range(n_kv):
            key = _read_str(f)
            (vtype,) = struct.unpack("<I", f.read(4))
            if key in wanted:
                out[key] = _read_value(f, vtype)
            else:
                _skip_value(f, vtype)
            if len(out) == len(wanted):
                break
    return out


def _read_str(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8", "replace")


def _read_value(f: BinaryIO, vtype: int) -> Any:
    if vtype == _GGUF_STRING:
        return _read_str(f)
    if vtype == _GGUF_ARRAY:
        itype, count = struct.unpack("<IQ", f.read(12))
        return [_read_value(f, itype) for _ in range(count)]
    fmt = _GGUF_SCALARS.get(vtype)
    if fmt is None:
        raise ValueError(f"unknown GGUF value type {vtype}")
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def _skip_value(f: BinaryIO, vtype: int) -> None:
    if vtype == _GGUF_STRING:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(n, 1)
    elif vtype == _GGUF_ARRAY:
        itype, count = struct.unpack("<IQ", f.read(12))
        if itype in _GGUF_SCALARS:
            f.seek(count * struct.calcsize(_GGUF_SCALARS[itype]), 1)
        else:
            for _ in range(count):
                _skip_value(f, itype)
    else:
        fmt = _GGUF_SCALARS.get(vtype)
        if fmt is None:
            raise ValueError(f"unknown GGUF value type {vtype}")
        f.seek(struct.calcsize(fmt), 1)


def _jinja_env() -> Any:
    """The Jinja2 environment chat templates are written for (as transformers builds it)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@dataclass
class ChatTemplate:
    """A chat template and the special tokens it refers to.

    Attributes:
        template: the Jinja2 source.
        bos_token, eos_token: the texts of the BOS and EOS tokens ("" when unknown).
        adds_bos: whether the server's tokenizer puts a BOS in front of a raw prompt by itself
            (the GGUF's ``tokenizer.ggml.add_bos_token``; ``None`` = unknown): when True, a BOS that
            the template writes is left out of the text sent, so the model does not see two.
            Unknown keeps it (some vocabularies call ``<|im_start|>`` their BOS).
        source: where the template came from (for logs and config.json).
    """

    template: str
    bos_token: str = ""
    eos_token: str = ""
    adds_bos: bool | None = None
    source: str = ""
    _compiled: Any = field(default=None, init=False, repr=False, compare=False)

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The text a model completes for ``messages`` (a leading BOS dropped when the server adds its own)."""
        if self._compiled is None:
            self._compiled = _jinja_env().from_string(self.template)
        text = self._compiled.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )
        if self.bos_token and self.adds_bos is True and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text

    @property
    def stops(self) -> list[str]:
        """Stop strings that end the assistant turn (the EOS text), for raw completions."""
        return [self.eos_token] if self.eos_token else []

    @classmethod
    def from_gguf(cls, path: str | Path) -> "ChatTemplate":
        """The template stored in a GGUF file's ``tokenizer.chat_template`` metadata."""
        keys = (
            "tokenizer.chat_template",
            _TOKENS_KEY,
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.add_bos_token",
        )
        meta = read_gguf_metadata(path, keys)
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{path} has no tokenizer.chat_template: it is not a chat model, or pass another template")
        tokens = meta.get(_TOKENS_KEY) or []

        def spell(key: str) -> str:
            i = meta.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

        return cls(
            template=template,
            bos_token=spell("tokenizer.ggml.bos_token_id"),
            eos_token=spell("tokenizer.ggml.eos_token_id"),
            adds_bos=meta.get("tokenizer.ggml.add_bos_token"),
            source=str(path),
        )

    @classmethod
    def from_hf(cls, name_or_dir: str) -> "ChatTemplate":
        """The template of a HF tokenizer (a local directory or a cached hub id)."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(name_or_dir, local_files_only=True)
        template = tok.chat_template
        if isinstance(template, dict):  # several named templates: the default one
            template = template.get("default") or next(iter(template.values()))
        if not template:
            raise ValueError(f"the tokenizer of {name_or_dir} has no chat template")
        return cls(
            template=template,
            bos_token=tok.bos_token or "",
            eos_token=tok.eos_token or "",
            adds_bos=bool(getattr(tok, "add_bos_token", False)),
            source=str(name_or_dir),
        )

    @classmethod
    def from_props(cls, props: dict[str, Any], source: str) -> "ChatTemplate | None":
        """The template that llama.cpp's ``llama-server`` reports on ``GET /props`` (None when absent)."""
        template = props.get("chat_template") if isinstance(props, dict) else None
        if not isinstance(template, str) or not template:
            return None
        return cls(
            template=template,
            bos_token=str(props.get("bos_token") or ""),
            eos_token=str(props.get("eos_token") or ""),
            adds_bos=None,
            source=source,
        )


def load_chat_template(source: str) -> ChatTemplate:
    """A chat template from a ``.gguf`` file, a Jinja file, or a HF tokenizer directory / id."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ChatTemplate.from_gguf(path)
    if path.is_file() and path.suffix.lower() in (".jinja", ".j2", ".jinja2"):
        return ChatTemplate(template=path.read_text(encoding="utf-8"), source=str(path))
    if source.lower().endswith(".gguf"):
        raise FileNotFoundError(f"GGUF file not found: {source}")
    try:
        return ChatTemplate.from_hf(source)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"no chat template found at {source!r} ({exc}): pass a .gguf file, a .jinja file or a HF tokenizer "
            "directory"
        ) from exc
