"""WebShop's product catalog, loaded by streaming so that the 1.18M-product file fits in memory.

The catalog is what the shop sells: one dict per product with the keys WebShop's own loader
(``load_products``) gives it, restricted to the ones the environment and the reward use:
``asin, name, Title, Description, BulletPoints, pricing, Price, options, Attributes, query,
category, product_category, Rating, Reviews`` plus, when the files have them,
``instruction_text``/``instruction_attributes`` (synthetic goals) and ``instructions`` (human goals).

Files are found in a data folder by name:

- products: ``items_shuffle*.json[.gz]`` (a JSON array; the full ``items_shuffle.json`` is preferred),
- attributes and synthetic instructions: ``items_ins_v2*.json[.gz]`` (a JSON object asin -> record),
- human instructions (optional): ``items_human_ins*.json[.gz]`` (a JSON object asin -> list).

Every file is parsed element by element (:func:`iter_json_array`, :func:`iter_json_object`), so the
raw text and the parsed catalog are never held at once. Price ranges are resolved to one price
drawn uniformly inside the range by ``random.Random(233)`` in catalog order: the original draws
them with the unseeded global ``random``; we fix the seed so that goals and rewards are the same
in every process.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

#: the seed of the price draws (and, continued, of the goals' price clauses); WebShop's number.
PRICE_SEED = 233
#: bytes read per chunk by the streaming parser.
CHUNK_CHARS = 1 << 20

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")
_NOT_PRICE_CHAR = re.compile(r"[^\d.]")


class CatalogError(ValueError):
    """A catalog file is missing or malformed; the message says which file and what to do."""


@dataclass(frozen=True)
class CatalogFiles:
    """The files one catalog is read from."""

    products: Path
    attributes: Path
    human: Path | None = None


@dataclass
class Catalog:
    """Products, their lookup by ASIN and their resolved prices: what the shop sells."""

    files: CatalogFiles
    products: list[dict[str, Any]]
    by_asin: dict[str, dict[str, Any]]
    prices: dict[str, float]
    #: state of ``random.Random(PRICE_SEED)`` after the price draws; goals continue from it.
    rng_state: tuple = field(repr=False, default=())
    #: goal lists by kind, built once by :func:`rlem_gym.envs.webshop.goals.get_goals`.
    goal_lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False, compare=False)
    _digest: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.products)

    def digest(self) -> str:
        """sha256 of the product file's bytes (the search index's cache key); computed once."""
        if self._digest is None:
            h = hashlib.sha256()
            with open(self.files.products, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
            self._digest = h.hexdigest()
        return self._digest


# ----------------------------------------------------------------------------- streaming JSON


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


class _JsonStream:
    """Reads JSON values one at a time from a text file with a bounded buffer."""

    def __init__(self, f: io.TextIOBase, name: str) -> None:
        self.f = f
        self.name = name
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.chunk = CHUNK_CHARS

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.f.read(self.chunk)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        got = self.peek()
        if got != char:
            raise CatalogError(
                f"{self.name}: expected {char!r} but found {got or 'end of file'!r}; is it a WebShop JSON file?"
            )
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if not self._fill():
                    raise CatalogError(
                        f"{self.name}: malformed JSON ({exc.msg} near char {exc.pos}); re-download the file"
                    ) from None
                self.chunk = min(self.chunk * 2, 1 << 26)  # a value longer than a chunk: read more at once
                continue
            if end == len(self.buf) and isinstance(obj, (int, float)) and self._fill():
                continue  # a number cut at the buffer's end: parse it again with more text
            self.pos = end
            self.chunk = CHUNK_CHARS
            return obj


def _iter_container(
    path: str | os.PathLike, opener: str, closer: str, between: str, item: Callable[[_JsonStream], Any]
) -> Iterator[Any]:
    """Yield ``item(stream)`` for each element of the top-level ``opener ... closer`` container."""
    path = Path(path)
    with _open_text(path) as f:
        s = _JsonStream(f, path.name)
        s.expect(opener)
        if s.peek() == closer:
            return
        while True:
            yield item(s)
            sep = s.peek()
            s.pos += 1
            if sep == closer:
                return
            if sep != ",":
                raise CatalogError(
                    f"{path.name}: expected ',' or '{closer}' between {between}, found {sep or 'end of file'!r}"
                )


def _member(s: _JsonStream) -> tuple[str, Any]:
    key = s.value()
    if not isinstance(key, str):
        raise CatalogError(f"{s.name}: object keys must be strings")
    s.expect(":")
    return key, s.value()


def iter_json_array(path: str | os.PathLike) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array one at a time (the file is never read whole)."""
    return _iter_container(path, "[", "]", "array elements", _JsonStream.value)


def iter_json_object(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """Yield the (key, value) members of a top-level JSON object one at a time."""
    return _iter_container(path, "{", "}", "members", _member)


# ----------------------------------------------------------------------------- file discovery


def _pick(folder: Path, stem: str, preferred: tuple[str, ...], required: bool) -> Path | None:
    for name in preferred:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.glob(f"{stem}*.json*") if p.is_file() and p.name.endswith((".json", ".json.gz")))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CatalogError(f"{folder}: several {stem}* files ({names}); keep one per folder")
    if required:
        raise CatalogError(
            f"{folder}: no {stem}*.json[.gz] file; point data_dir at a folder with WebShop's {stem}.json"
        )
    return None


def find_catalog_files(data_dir: str | os.PathLike) -> CatalogFiles:
    """Locate the product, attribute and (optional) human-instruction files in ``data_dir``."""
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise CatalogError(
            f"data_dir {folder} is not a folder; pass the folder holding items_shuffle*.json and items_ins_v2*.json"
        )
    products = _pick(folder, "items_shuffle", ("items_shuffle.json", "items_shuffle.json.gz"), True)
    attributes = _pick(folder, "items_ins_v2", ("items_ins_v2.json", "items_ins_v2.json.gz"), True)
    human = _pick(folder, "items_human_ins", ("items_human_ins.json", "items_human_ins.json.gz"), False)
    return CatalogFiles(products=products, attributes=attributes, human=human)


def default_data_dir() -> Path:
    """The folder of the shipped 1,000-product catalog."""
    return Path(__file__).resolve().parent / "data"


# ----------------------------------------------------------------------------- product fields


def parse_pricing(pricing: Any) -> tuple[list[float], str]:
    """Turn a raw ``pricing`` string into (prices, display tag) the way WebShop's loader does.

    ``"$12.99"`` -> ([12.99], "$12.99"); ``"$5 - $9.50"`` -> ([5.0, 9.5], "$5.0 to $9.5");
    empty, missing or not a string -> ([100.0], "$100.0").
    """
    if not pricing or not isinstance(pricing, str):
        return [100.0], "$100.0"
    prices = []
    for part in pricing.split("$")[1:]:
        digits = _NOT_PRICE_CHAR.sub("", part)
        try:
            prices.append(float(Decimal(digits)))
        except InvalidOperation:
            continue
    if not prices:
        return [100.0], "$100.0"
    prices = prices[:2]
    if len(prices) == 1:
        return prices, f"${prices[0]}"
    return prices, f"${prices[0]} to ${prices[1]}"


def parse_options(customization_options: Any) -> dict[str, list[str]]:
    """Option name (lower-case) -> values (stripped, '/' as ' | ', lower-case), as WebShop shows them."""
    options: dict[str, list[str]] = {}
    if not isinstance(customization_options, dict):
        return options
    for name, contents in customization_options.items():
        if contents is None:
            continue
        values = []
        for content in contents:
            value = content.get("value", "") if isinstance(content, dict) else str(content)
            values.append(str(value).strip().replace("/", " | ").lower())
        options[str(name).lower()] = values
    return options


def make_product(raw: dict[str, Any], attributes: dict[str, Any] | None, human: list | None) -> dict[str, Any]:
    """One catalog product from one raw ``items_shuffle`` record plus its attribute/instruction records."""
    name = str(raw.get("name") or "")
    small = raw.get("small_description")
    bullets = small if isinstance(small, list) else [small if isinstance(small, str) else ""]
    pricing, price_tag = parse_pricing(raw.get("pricing"))
    attrs = attributes or {}
    product: dict[str, Any] = {
        "asin": raw["asin"],
        "name": name,
        "Title": name,
        "Description": str(raw.get("full_description") or ""),
        "BulletPoints": [str(b) for b in bullets],
        "pricing": pricing,
        "Price": price_tag,
        "options": parse_options(raw.get("customization_options")),
        "Attributes": list(attrs["attributes"]) if "attributes" in attrs else ["DUMMY_ATTR"],
        "query": str(raw.get("query") or "").lower().strip(),
        "category": str(raw.get("category") or ""),
        "product_category": str(raw.get("product_category") or ""),
        "Rating": "N.A.",
        "Reviews": [],
        "instruction_text": attrs.get("instruction"),
        "instruction_attributes": attrs.get("instruction_attributes"),
    }
    if human:
        product["instructions"] = human
    return product


def search_text(product: dict[str, Any]) -> str:
    """The text WebShop's search engine indexes: title, description, first bullet point, options."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product["options"].items())
    bullets = product["BulletPoints"]
    return " ".join([product["Title"], product["Description"], bullets[0] if bullets else "", option_text]).lower()


def _draw_prices(products: list[dict[str, Any]], rng: random.Random) -> dict[str, float]:
    prices = {}
    for p in products:
        pricing = p["pricing"]  # one or two prices (parse_pricing)
        if len(pricing) == 1:
            prices[p["asin"]] = pricing[0]
        else:
            prices[p["asin"]] = rng.uniform(*pricing[:2])
    return prices


def load_catalog(files: CatalogFiles, num_products: int | None = None) -> Catalog:
    """Stream the catalog files into a :class:`Catalog` (first ``num_products`` records if given)."""
    attributes = {}
    for asin, record in iter_json_object(files.attributes):
        if isinstance(record, dict):
            attributes[asin] = {
                k: record[k] for k in ("attributes", "instruction", "instruction_attributes") if k in record
            }
    human = {}
    if files.human is not None:
        human = {asin: recs for asin, recs in iter_json_object(files.human) if isinstance(recs, list)}
    products: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(iter_json_array(files.products)):
        if num_products is not None and i >= num_products:
            break
        if not isinstance(raw, dict):
            continue
        asin = raw.get("asin")
        if not isinstance(asin, str) or asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        products.append(make_product(raw, attributes.get(asin), human.get(asin)))
    if not products:
        raise CatalogError(f"{files.products.name}: no products; is it WebShop's items_shuffle file?")
    rng = random.Random(PRICE_SEED)
    prices = _draw_prices(products, rng)
    return Catalog(
        files=files,
        products=products,
        by_asin={p["asin"]: p for p in products},
        prices=prices,
        rng_state=rng.getstate(),
    )


_CACHE: dict[tuple, Catalog] = {}


def get_catalog(data_dir: str | os.PathLike | None = None, num_products: int | None = None) -> Catalog:
    """The catalog of ``data_dir`` (the shipped one when None), loaded once per process and shared."""
    files = find_catalog_files(data_dir if data_dir is not None else default_data_dir())
    stamp = tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (files.products, files.attributes, files.human) if p
    )
    key = (stamp, num_products)
    if key not in _CACHE:
        _CACHE[key] = load_catalog(files, num_products)
    return _CACHE[key]
