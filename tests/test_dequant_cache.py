"""The on-disk cache of dequantised GGUF weights (rlem_gym.llm.dequant_cache) and its use by the HF backend."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rlem_gym.llm import dequant_cache  # noqa: E402
from rlem_gym.llm.dequant_cache import DEQUANT_CACHE_ENV, MARKER  # noqa: E402
from rlem_gym.llm.hf import _context_length, _eos_ids, _load_dequantised  # noqa: E402
from rlem_gym.models import ZOO  # noqa: E402

TEXTS = ["Hello, world!", "search[red mirror under $40]", "click[< Prev]  Ünïcödé — 价格 <|im_end|>", "   x\n\ty"]


def _assert_same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype == torch.float32, name
        assert torch.equal(sa[name], sb[name]), name


def _tiny_llama(tied: bool = True):
    """A real (randomly initialised) Llama causal LM, small enough to save in a blink."""
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A cache under tmp_path and a file standing in for a GGUF (the cache keys on its path, size and mtime)."""
    monkeypatch.setenv(DEQUANT_CACHE_ENV, str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF" + bytes(60))
    return folder


def test_the_first_load_fills_the_cache_and_a_load_from_it_is_bit_identical(hf_llm, dequant_cache_dir):
    """The shipped SmolLM2 GGUF, dequantised by transformers, and the same model read back from the cache."""
    gguf = ZOO["smollm2-135m"].gguf_path()
    entry = dequant_cache.lookup(str(gguf.parent), gguf.name)
    assert entry is not None and entry.parent == dequant_cache_dir
    marker = (entry / MARKER).read_text(encoding="utf-8")
    assert str(gguf.resolve()) in marker and str(gguf.stat().st_size) in marker
    assert not list(dequant_cache_dir.glob(".build-*"))

    if hf_llm._w.origin == "gguf":  # the usual order: this session's first load dequantised the GGUF
        ref_model, ref_tok = hf_llm._w.model, hf_llm._w.tokenizer
    else:  # a subprocess filled the cache first: dequantise the GGUF here to compare against
        assert hf_llm._w.origin == "cache"
        ref_tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        ref_model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    model, tok = _load_dequantised(str(gguf.parent), gguf.name)
    assert getattr(model.config, "quantization_config", None) is None
    _assert_same_weights(model, ref_model)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    assert tok.get_vocab() == ref_tok.get_vocab()
    for text in TEXTS:
        assert tok.encode(text) == ref_tok.encode(text), text
    chat = [{"role": "user", "content": "Buy a red mirror."}]
    assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == ref_tok.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True
    )
    assert _eos_ids(model, tok) == _eos_ids(ref_model, ref_tok) == hf_llm._w.eos_ids
    assert _context_length(model.config, tok) == hf_llm.context_length == 8192


def test_entries_are_keyed_on_the_gguf_file_and_need_their_marker(fake_gguf, hf_llm, tmp_path):
    lm, tok = _tiny_llama(), hf_llm._w.tokenizer
    assert dequant_cache.lookup(str(fake_gguf), "m.gguf") is None
    entry = dequant_cache.store(str(fake_gguf), "m.gguf", lm, tok)
    assert entry is not None and entry.parent == tmp_path / "cache" and entry.name.startswith("m-")
    assert dequant_cache.lookup(str(fake_gguf), "m.gguf") == entry
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER} <= {p.name for p in entry.iterdir()}
    assert not list((tmp_path / "cache").glob(".build-*"))

    back, back_tok = _load_dequantised(str(fake_gguf), "m.gguf")
    _assert_same_weights(back, lm)
    assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()
    assert back_tok.encode(TEXTS[2]) == tok.encode(TEXTS[2])

    (entry / MARKER).unlink()  # an entry without its marker is not an entry
    assert dequant_cache.lookup(str(fake_gguf), "m.gguf") is None
    assert dequant_cache.store(str(fake_gguf), "m.gguf", lm, tok) == entry  # rebuilt in place
    assert dequant_cache.lookup(str(fake_gguf), "m.gguf") == entry

    (fake_gguf / "m.gguf").write_bytes(b"GGUF" + bytes(80))  # the GGUF changed: the old entry no longer applies
    assert dequant_cache.lookup(str(fake_gguf), "m.gguf") is None
    assert dequant_cache.lookup(str(fake_gguf), "other.gguf") is None  # not a local file: no key


def test_an_unreadable_entry_is_removed_with_a_warning(fake_gguf, hf_llm):
    entry = dequant_cache.store(str(fake_gguf), "m.gguf", _tiny_llama(tied=False), hf_llm._w.tokenizer)
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # torn by a crash
    with pytest.warns(RuntimeWarning, match="unreadable dequantised-weights cache"):
        assert _load_dequantised(str(fake_gguf), "m.gguf") is None
    assert not entry.exists()
    assert dequant_cache.lookup(str(fake_gguf), "m.gguf") is None


def test_the_cache_can_be_turned_off_and_a_failed_write_only_warns(fake_gguf, hf_llm, tmp_path, monkeypatch):
    lm, tok = _tiny_llama(), hf_llm._w.tokenizer
    monkeypatch.setenv(DEQUANT_CACHE_ENV, "0")
    assert dequant_cache.cache_root() is None
    assert dequant_cache.store(str(fake_gguf), "m.gguf", lm, tok) is None
    assert dequant_cache.lookup(str(fake_gguf), "m.gguf") is None

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(DEQUANT_CACHE_ENV, str(blocker))
    with pytest.warns(RuntimeWarning, match="could not cache the dequantised weights"):
        assert dequant_cache.store(str(fake_gguf), "m.gguf", lm, tok) is None


def test_builds_left_by_killed_processes_are_removed_after_an_hour(fake_gguf, hf_llm, tmp_path):
    root = tmp_path / "cache"
    old, recent = root / ".build-old", root / ".build-recent"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    assert dequant_cache.store(str(fake_gguf), "m.gguf", _tiny_llama(), hf_llm._w.tokenizer) is not None
    assert not old.exists() and recent.exists()  # a recent one may belong to a process still writing it


def _tiny_tokenizer():
    """A real fast tokenizer with a 64-word vocabulary, built in memory (no model needed)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, 64)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def _gguf_stand_in(folder: Path, name: str, size: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"GGUF" + bytes(size))
    return str(folder)


def test_entries_of_changed_or_deleted_ggufs_are_removed_by_the_next_store(fake_gguf, tmp_path):
    lm, tok = _tiny_llama(), _tiny_tokenizer()
    other = _gguf_stand_in(tmp_path / "other", "o.gguf", 10)
    gone = _gguf_stand_in(tmp_path / "gone", "g.gguf", 10)
    old_m = dequant_cache.store(str(fake_gguf), "m.gguf", lm, tok)
    kept = dequant_cache.store(other, "o.gguf", lm, tok)
    dead = dequant_cache.store(gone, "g.gguf", lm, tok)
    assert {old_m, kept, dead} <= set((tmp_path / "cache").iterdir())

    (fake_gguf / "m.gguf").write_bytes(b"GGUF" + bytes(80))  # m.gguf changed: its old entry is dead
    (Path(gone) / "g.gguf").unlink()  # g.gguf deleted: its entry is dead
    new_m = dequant_cache.store(str(fake_gguf), "m.gguf", lm, tok)
    assert new_m != old_m
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([new_m.name, kept.name])
    assert dequant_cache.lookup(other, "o.gguf") == kept


def test_the_size_cap_evicts_the_least_recently_used_entries(fake_gguf, tmp_path, monkeypatch):
    lm, tok = _tiny_llama(), _tiny_tokenizer()
    models = [_gguf_stand_in(tmp_path / f"m{i}", f"m{i}.gguf", 10) for i in range(3)]
    entries = [dequant_cache.store(models[i], f"m{i}.gguf", lm, tok) for i in range(3)]
    for i, entry in enumerate(entries):  # stored at different times, m0 first
        t = time.time() - 100 * (3 - i)
        os.utime(entry / MARKER, (t, t))
    assert dequant_cache.lookup(models[0], "m0.gguf") == entries[0]  # m0 used just now: m1 is the oldest
    size = dequant_cache._folder_bytes(entries[0])

    monkeypatch.setenv(dequant_cache.DEQUANT_CACHE_MAX_GB_ENV, str(2.5 * size / 1e9))  # room for 2 entries
    assert dequant_cache.prune(tmp_path / "cache") == [entries[1]]
    assert [dequant_cache.lookup(models[i], f"m{i}.gguf") for i in range(3)] == [entries[0], None, entries[2]]

    new = _gguf_stand_in(tmp_path / "m3", "m3.gguf", 10)
    monkeypatch.setenv(dequant_cache.DEQUANT_CACHE_MAX_GB_ENV, "0")  # the entry just stored always stays
    kept = dequant_cache.store(new, "m3.gguf", lm, tok)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [kept.name]

    monkeypatch.setenv(dequant_cache.DEQUANT_CACHE_MAX_GB_ENV, "lots")
    with pytest.raises(ValueError, match="RLEM_GYM_DEQUANT_CACHE_MAX_GB must be a number"):
        dequant_cache.store(new, "m3.gguf", lm, tok)
