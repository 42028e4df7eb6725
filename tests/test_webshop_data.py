"""WebShop data: the streaming loader, product fields, goals and splits, BM25 search and its disk cache."""

import gzip
import json
from pathlib import Path

import pytest

from rlem_gym.envs.webshop import catalog as cat
from rlem_gym.envs.webshop import search as search_mod
from rlem_gym.envs.webshop.goals import get_goals, price_clause, resolve_split

SHARED_DOCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "webshop" / "documents.jsonl.gz"


@pytest.fixture(scope="module")
def catalog():
    return cat.get_catalog()


def test_streaming_parser_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(cat, "CHUNK_CHARS", 7)  # every value straddles chunks
    items = [
        {"asin": f"B{i:09d}", "n": 12345.678 * i, "s": "x" * (i * 13), "l": [1, 2, {"k": None}]} for i in range(30)
    ]
    path = tmp_path / "items.json"
    path.write_text(" \n" + json.dumps(items, indent=1) + "\n")
    assert list(cat.iter_json_array(path)) == items
    gz = tmp_path / "obj.json.gz"
    with gzip.open(gz, "wt") as f:
        json.dump({str(i): i * 1000 for i in range(50)}, f)
    assert dict(cat.iter_json_object(gz)) == {str(i): i * 1000 for i in range(50)}
    (tmp_path / "bad.json").write_text('[{"a": 1}, {"a": ')
    with pytest.raises(cat.CatalogError, match="malformed"):
        list(cat.iter_json_array(tmp_path / "bad.json"))
    (tmp_path / "notarray.json").write_text('{"a": 1}')
    with pytest.raises(cat.CatalogError, match="expected '\\['"):
        list(cat.iter_json_array(tmp_path / "notarray.json"))


def test_pricing_and_options_follow_webshop():
    assert cat.parse_pricing("$12.99") == ([12.99], "$12.99")
    assert cat.parse_pricing("$877.80") == ([877.8], "$877.8")
    assert cat.parse_pricing("$5.00 - $9.50") == ([5.0, 9.5], "$5.0 to $9.5")
    assert cat.parse_pricing("$1,299.00") == ([1299.0], "$1299.0")
    assert cat.parse_pricing("") == ([100.0], "$100.0")
    raw = {"Color": [{"value": " Black/White ", "image": None}], "Size": None}
    assert cat.parse_options(raw) == {"color": ["black | white"]}


def test_catalog_fields(catalog):
    assert len(catalog) == 1000 and catalog.products[0]["asin"] == "B06Y3VLDFB"
    p = catalog.by_asin["B06Y3VLDFB"]
    assert p["Price"] == "$877.8" and p["Attributes"] == ["console table", "solid wood"] and p["Rating"] == "N.A."
    ranged = [p for p in catalog.products if len(p["pricing"]) == 2]
    assert len(ranged) == 93
    assert all(min(p["pricing"]) <= catalog.prices[p["asin"]] <= max(p["pricing"]) for p in ranged)
    assert cat.get_catalog() is catalog  # loaded once per process


@pytest.mark.skipif(not SHARED_DOCS.exists(), reason="needs ../shared/data/webshop/documents.jsonl.gz")
def test_catalog_matches_webshop_loader_output(catalog):
    """documents.jsonl holds WebShop's own load_products output and search text for the same 1,000 products."""
    with gzip.open(SHARED_DOCS, "rt") as f:
        docs = [json.loads(line) for line in f]
    keys = [
        "asin",
        "Title",
        "Description",
        "BulletPoints",
        "pricing",
        "Price",
        "options",
        "Attributes",
        "query",
        "product_category",
    ]
    for doc, product in zip(docs, catalog.products, strict=True):
        assert {k: doc["product"][k] for k in keys} == {k: product[k] for k in keys}
        assert doc["contents"] == cat.search_text(product)


def test_goals_and_splits(catalog):
    goals = get_goals(catalog, "synthetic")
    assert len(goals) == 6910 and get_goals(catalog, "synthetic") is goals
    fresh = cat.load_catalog(catalog.files)  # another catalog object gets its own goals, equal to these
    assert get_goals(fresh, "synthetic") is not goals and get_goals(fresh, "synthetic") == goals
    g = goals[0]
    assert g["instruction_text"].startswith("Find me double sided, machine washable decorative pillows")
    assert g["instruction_text"].endswith('with size: 28" x 28", and price lower than 50.00 dollars')
    assert g["price_upper"] == 50.0 and g["goal_options"] == {"size": '28" x 28"'} and g["weight"] > 0
    test, train = resolve_split(goals, "synthetic", "test"), resolve_split(goals, "synthetic", "train")
    assert test == list(range(100)) and len(train) == 200 and min(train) >= 100
    assert not {goals[i]["asin"] for i in test} & {goals[i]["asin"] for i in train}
    human = get_goals(catalog, "human")
    assert len(human) == 13 and all(
        not h["instruction_text"].endswith(".") or "dollars" in h["instruction_text"] for h in human
    )


def test_price_clause_grid():
    import random

    upper, text = price_clause(12.5, random.Random(0))
    assert upper in (30.0, 40.0, 50.0) and text == f", and price lower than {upper:.2f} dollars"
    assert price_clause(985.0, random.Random(0)) == (1_000_000, "")  # only 990 is above: no clause


def test_search_is_bm25_top50_and_deterministic(catalog):
    index = search_mod.get_index(catalog)
    hits = index.search("decorative pillow covers 18x18")
    assert len(hits) == 50 and len(set(hits)) == 50
    assert "pillow" in catalog.products[hits[0]]["Title"].lower()
    assert index.search("decorative pillow covers 18x18") == hits
    assert index.search("the and of") == [] and index.search("") == []
    assert len(index.search("pillow", k=5)) == 5
    assert index.analyzer("Men's Running Shoes 6.76 fl oz") == ["men", "run", "shoe", "6.76", "fl", "oz"]


def test_index_cache_on_disk_is_reused(tmp_path, monkeypatch, catalog):
    monkeypatch.setenv("RLEM_GYM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(search_mod, "_INDEXES", {})
    before = dict(search_mod.STATS)
    first = search_mod.get_index(catalog)
    folder = search_mod.index_dir(catalog)
    assert folder.parent.parent == tmp_path and (folder / "meta.json").exists()
    assert search_mod.STATS["built"] == before["built"] + 1
    monkeypatch.setattr(search_mod, "_INDEXES", {})  # a "new process"
    second = search_mod.get_index(catalog)
    assert search_mod.STATS["built"] == before["built"] + 1 and search_mod.STATS["loaded"] == before["loaded"] + 1
    assert second.search("red shirt") == first.search("red shirt")


def test_data_dir_errors_are_clear(tmp_path):
    with pytest.raises(cat.CatalogError, match="not a folder"):
        cat.find_catalog_files(tmp_path / "missing")
    with pytest.raises(cat.CatalogError, match="items_shuffle"):
        cat.find_catalog_files(tmp_path)
