"""The simulated wikiHow site: articles, authors, categories and references.

What the Mobile-Env WikiHow tasks need of the real app, as plain data. Real facts (exact
titles, breadcrumbs, co-authors, update dates, intros captured on real screens, the real author
bio and the "why people trust wikiHow" text) come from the package bundle and win wherever
they exist. Everything else is **synthesised deterministically from the article title**
(seeded by a BLAKE2b hash of it, never by Python's salted ``hash``), so every run of every
process sees the same site. Synthesised text is generic template prose and is marked:
``Article.synthetic_fields`` / ``Author.synthetic`` say which parts are made up, and
synthetic reference links point at ``example.org``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

#: package-data bundle built by ``rlem_gym.envs.wikihow.build_data``.
BUNDLE_NAME = "wikihow_bundle.json.gz"

SMALL_WORDS = frozenset("a an and as at but by for from in into nor of on or the to with vs via".split())

#: wikiHow's top-level categories (public names) -> (title keywords, subcategories).
#: Used only to place articles that have no real breadcrumb; all placements are synthetic.
TAXONOMY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Arts and Entertainment": (
        (
            "draw",
            "paint",
            "painting",
            "sing",
            "song",
            "guitar",
            "piano",
            "music",
            "dance",
            "movie",
            "film",
            "poem",
            "art",
            "drawing",
            "actor",
            "band",
            "comic",
            "anime",
        ),
        ("Drawing", "Music", "Movies", "Performing Arts", "Visual Arts"),
    ),
    "Cars and Other Vehicles": (
        (
            "car",
            "cars",
            "truck",
            "motorcycle",
            "vehicle",
            "vehicles",
            "scooter",
            "bike",
            "bicycle",
            "tire",
            "engine",
            "boat",
            "drive",
        ),
        ("Car Maintenance and Repair", "Driving Basics", "Motorcycles", "Bicycles"),
    ),
    "Computers and Electronics": (
        (
            "computer",
            "windows",
            "mac",
            "iphone",
            "android",
            "excel",
            "pdf",
            "skype",
            "email",
            "google",
            "facebook",
            "youtube",
            "app",
            "software",
            "laptop",
            "phone",
            "internet",
            "website",
            "online",
            "password",
            "wifi",
            "print",
            "file",
            "microsoft",
            "whatsapp",
        ),
        ("Internet", "Software", "Hardware", "Phones", "Video"),
    ),
    "Education and Communications": (
        (
            "learn",
            "study",
            "school",
            "write",
            "letter",
            "language",
            "chinese",
            "english",
            "essay",
            "teacher",
            "college",
            "knowledge",
            "speak",
            "read",
            "grammar",
            "conflict",
        ),
        ("Communication Skills", "Studying", "Writing", "Languages", "Teaching"),
    ),
    "Family Life": (
        (
            "baby",
            "child",
            "children",
            "kids",
            "parent",
            "parents",
            "sister",
            "brother",
            "family",
            "mom",
            "dad",
            "teen",
            "toddler",
            "pregnant",
            "grandma",
        ),
        ("Parenting", "Siblings", "Pregnancy", "Family Activities"),
    ),
    "Finance and Business": (
        (
            "money",
            "stock",
            "stocks",
            "loan",
            "mortgage",
            "bank",
            "business",
            "tax",
            "taxes",
            "invest",
            "credit",
            "insurance",
            "retire",
            "budget",
            "apartment",
            "buy",
            "sell",
        ),
        ("Personal Finance", "Investments and Trading", "Managing Your Money", "Business"),
    ),
    "Food and Entertaining": (
        (
            "cook",
            "bake",
            "recipe",
            "food",
            "potatoes",
            "egg",
            "eggs",
            "yolks",
            "cake",
            "drink",
            "mezcal",
            "coffee",
            "tea",
            "wine",
            "lobster",
            "scallops",
            "grill",
            "kitchen",
            "utensils",
            "pan",
            "keurig",
            "bread",
            "cheese",
            "meat",
            "soup",
        ),
        ("Cooking", "Recipes", "Drinks", "Kitchen Utensils", "Baking"),
    ),
    "Health": (
        (
            "health",
            "pain",
            "doctor",
            "physician",
            "medicine",
            "disease",
            "sleep",
            "anxiety",
            "depression",
            "autistic",
            "autism",
            "fear",
            "ringworm",
            "scars",
            "neosporin",
            "vaping",
            "diet",
            "weight",
            "injury",
        ),
        ("Conditions and Treatments", "Mental Health", "Medication and Equipment", "Wellness"),
    ),
    "Hobbies and Crafts": (
        (
            "craft",
            "crafts",
            "knit",
            "sew",
            "lei",
            "decoupage",
            "origami",
            "paper",
            "fishing",
            "fish",
            "collect",
            "model",
            "robot",
            "woodworking",
            "pottery",
            "candle",
        ),
        ("Crafts", "Fishing", "Collecting", "Woodworking"),
    ),
    "Holidays and Traditions": (
        (
            "christmas",
            "halloween",
            "easter",
            "birthday",
            "holiday",
            "wedding",
            "valentine",
            "thanksgiving",
            "party",
            "gift",
        ),
        ("Christmas", "Halloween", "Birthdays", "Weddings"),
    ),
    "Home and Garden": (
        (
            "house",
            "home",
            "garden",
            "grow",
            "plant",
            "plants",
            "lawn",
            "clean",
            "carpet",
            "washer",
            "lightbulb",
            "light",
            "pilot",
            "room",
            "furniture",
            "wall",
            "roof",
            "hickory",
            "nuts",
            "limes",
            "flower",
            "pots",
            "tree",
        ),
        ("Gardening", "Housekeeping", "Home Maintenance", "Home Decorating"),
    ),
    "Personal Care and Style": (
        (
            "hair",
            "makeup",
            "cream",
            "skin",
            "dress",
            "shoes",
            "suede",
            "wear",
            "nail",
            "nails",
            "beard",
            "shave",
            "fashion",
            "clothes",
            "jeggings",
            "jeans",
            "perfume",
            "wax",
            "gauges",
        ),
        ("Hair Care", "Makeup", "Fashion", "Personal Hygiene", "Clothing"),
    ),
    "Pets and Animals": (
        (
            "dog",
            "dogs",
            "cat",
            "cats",
            "pet",
            "pets",
            "rabbit",
            "rabbits",
            "goldfish",
            "horse",
            "bird",
            "hamster",
            "animal",
            "animals",
            "puppy",
            "kitten",
            "alligator",
        ),
        ("Dogs", "Cats", "Rabbits", "Aquarium Fish", "Birds"),
    ),
    "Philosophy and Religion": (
        (
            "god",
            "church",
            "christian",
            "pray",
            "prayer",
            "bible",
            "religion",
            "faith",
            "meditate",
            "spiritual",
            "buddhism",
            "islam",
        ),
        ("Christianity", "Spirituality", "Religion", "Philosophy"),
    ),
    "Relationships": (
        (
            "friend",
            "friends",
            "girl",
            "girls",
            "guy",
            "boyfriend",
            "girlfriend",
            "date",
            "dating",
            "love",
            "relationship",
            "crush",
            "marriage",
            "flirt",
            "misgendering",
        ),
        ("Friends", "Dating", "Relationship Issues"),
    ),
    "Sports and Fitness": (
        (
            "football",
            "soccer",
            "basketball",
            "baseball",
            "tennis",
            "golf",
            "run",
            "running",
            "fitness",
            "exercise",
            "workout",
            "yoga",
            "swim",
            "roller",
            "gym",
            "skate",
        ),
        ("Personal Fitness", "Team Sports", "Individual Sports", "Outdoor Recreation"),
    ),
    "Travel": (
        (
            "travel",
            "trip",
            "flight",
            "airport",
            "hotel",
            "passport",
            "visa",
            "england",
            "berghain",
            "vacation",
            "czech",
            "country",
            "city",
        ),
        ("Travel Tips", "Destinations", "Air Travel"),
    ),
    "Work World": (
        (
            "job",
            "career",
            "interview",
            "resume",
            "boss",
            "office",
            "work",
            "manager",
            "employee",
            "grandmaster",
            "hooters",
            "specialist",
        ),
        ("Careers", "Job Search", "Workplace"),
    ),
    "Youth": (
        ("high", "teenager", "teens", "pokemon", "pokémon", "zorua", "game", "games", "cool", "popular", "middle"),
        ("Gaming", "School Life", "Social Life"),
    ),
}
ROOTS: tuple[str, ...] = tuple(TAXONOMY)

_FIRST_NAMES = (
    "Alex Jordan Morgan Taylor Casey Riley Jamie Avery Quinn Parker Rowan Emerson Hayden "
    "Reese Skyler Dakota Finley Sawyer Logan Kendall Elliot Marlowe Sage Blake"
).split()
_LAST_NAMES = (
    "Whitfield Caldwell Moreno Ashby Lindqvist Okafor Brennan Castillo Hartman Nakamura "
    "Sorensen Delgado Fairbanks Kowalski Prescott Abernathy Valdez Holloway Ramsey Lachance"
).split()
_ROLES = (
    "Professional Counselor",
    "Technology Writer",
    "Certified Personal Trainer",
    "Home Improvement Specialist",
    "Financial Advisor",
    "Licensed Cosmetologist",
    "Professional Chef",
    "Veterinarian",
    "Education Consultant",
    "Travel Writer",
    "wikiHow Staff Writer",
)

_INTRO_TEMPLATES = (
    "Want to know how to {t}? It is easier than it looks once you know the basic steps.",
    "If you have ever wondered how to {t}, you are not alone, and you can start today.",
    "Knowing how to {t} can save you time and effort.",
    "This guide walks you through how to {t} with simple, practical steps.",
    "With a little preparation and patience, you can learn how to {t}.",
)
_METHOD_HEADINGS = (
    "Getting Started",
    "Preparing Everything You Need",
    "Doing It Step by Step",
    "Avoiding Common Mistakes",
    "Finishing Up",
    "Trying an Alternative Approach",
    "Staying Safe",
    "Keeping It Up Over Time",
)
_STEP_TEMPLATES = (
    ("Gather what you need.", " Make sure you have everything ready before you {t}."),
    ("Read the instructions first.", " Taking a minute to plan makes it easier to {t}."),
    ("Take your time.", " Rushing is the most common reason people struggle to {t}."),
    ("Ask for help if you need it.", " A friend or an expert can make it easier to {t}."),
    ("Check your progress.", " Look back at what you have done so far and adjust."),
    ("Practice regularly.", " The more often you {t}, the more natural it feels."),
    ("Stay patient.", " Results may take a little while to show."),
    ("Keep things clean and organized.", " A tidy workspace helps you focus."),
)
_MONTHS = ("January February March April May June July August September October November December").split()
_TRUST_FALLBACK = (
    ("div", "", "Information You Can Trust"),
    ("div", "", "A Guide to our Editorial Process"),
)


def stable_int(*parts: str) -> int:
    """A process-independent 64-bit integer from strings (the seed of all synthesis)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def pick(seq, *parts: str):
    """Pick an item of ``seq`` deterministically from ``parts``."""
    return seq[stable_int(*parts) % len(seq)]


def title_case(text: str) -> str:
    """wikiHow-style title case: capitalise words except small ones (first word always)."""
    words = text.split(" ")
    out = []
    for i, w in enumerate(words):
        lw = w.lower()
        if i > 0 and lw in SMALL_WORDS:
            out.append(lw)
            continue
        m = re.search(r"[A-Za-z0-9À-ÿ]", w)
        if m is None:
            out.append(w)
        else:
            j = m.start()
            out.append(w[:j] + w[j].upper() + w[j + 1 :])
    return " ".join(out)


def slug(title: str) -> str:
    """The wikiHow URL slug of a title (``Be a Good Friend`` -> ``Be-a-Good-Friend``)."""
    return re.sub(r"\s+", "-", title.strip()).replace("'", "%27")


def words_of(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes kept inside words)."""
    return re.findall(r"[\w']+", text.lower())


@dataclass(frozen=True)
class Article:
    """One article as the app shows it. ``title`` has no "How to " prefix."""

    title: str
    chain: tuple[str, ...]
    """Category breadcrumb from the top-level category down to the leaf."""
    coauthors: tuple[str, ...]
    byline: str
    """"Co-authored by", "Written by" or "Author Info" (the last shows no names on top)."""
    last_updated: str
    views: int
    badge: str
    intro: str
    methods: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    references: tuple[str, ...]
    references_on_top: bool
    expert: bool
    synthetic_fields: tuple[str, ...] = ()
    method_kind: str = "Method"
    """"Method" or "Part": how the article labels its sections."""

    @property
    def full_title(self) -> str:
        return "How to " + self.title


@dataclass(frozen=True)
class Author:
    """An author page: name, role, bio and the articles listed on it."""

    name: str
    role: str
    bio: str
    articles: tuple[str, ...]
    synthetic: bool


@dataclass(frozen=True)
class Category:
    """A category page: its name, parent, subcategories and listed articles."""

    name: str
    parent: str | None
    subcategories: tuple[str, ...]
    articles: tuple[str, ...]
    synthetic: bool


def bundle_path() -> Path:
    """Where the shipped ``wikihow_bundle.json.gz`` lies (inside the installed package)."""
    return Path(str(resources.files("rlem_gym.envs.wikihow").joinpath("data", BUNDLE_NAME)))


@lru_cache(maxsize=1)
def load_bundle() -> dict:
    """Read the shipped ``wikihow_bundle.json.gz`` once per process."""
    try:
        blob = bundle_path().read_bytes()
    except FileNotFoundError as exc:  # pragma: no cover - packaging error
        raise FileNotFoundError(
            f"WikiHow data bundle {BUNDLE_NAME} is missing; rebuild it with "
            "`python -m rlem_gym.envs.wikihow.build_data --src <shared/data/wikihow>`"
        ) from exc
    return json.loads(gzip.decompress(blob).decode("utf-8"))


def classify_root(title: str) -> str:
    """The top-level category a title is synthesised under (keyword match, else hashed)."""
    ws = set(words_of(title))
    for root, (keys, _subs) in TAXONOMY.items():
        if ws.intersection(keys):
            return root
    return pick(ROOTS, "root", title.lower())


def synth_chain(title: str) -> tuple[str, ...]:
    """A synthetic two-level breadcrumb (top-level category, subcategory) for a title."""
    root = classify_root(title)
    sub = pick(TAXONOMY[root][1], "sub", title.lower())
    return (root, sub)


def synth_author_name(title: str, k: int = 0) -> str:
    """A synthetic (clearly made-up) co-author name for a title."""
    low = title.lower()
    return f"{pick(_FIRST_NAMES, 'fn', str(k), low)} {pick(_LAST_NAMES, 'ln', str(k), low)}"


def synth_article(title: str) -> Article:
    """An article synthesised from its title alone (every field marked synthetic)."""
    low = title.lower()
    seed = stable_int("article", low)
    n_auth = 1 + (seed >> 3) % 2
    coauthors = tuple(dict.fromkeys(synth_author_name(title, k) for k in range(n_auth)))
    byline = "Written by" if n_auth == 1 and (seed >> 5) % 3 == 0 else "Co-authored by"
    year = 2019 + (seed >> 7) % 4
    month = _MONTHS[(seed >> 11) % 12]
    day = 1 + (seed >> 15) % 28
    n_refs = 0 if (seed >> 19) % 10 < 3 else 3 + (seed >> 21) % 10
    t = low
    n_methods = 2 + (seed >> 25) % 2
    methods = []
    for m in range(n_methods):
        heading = pick(_METHOD_HEADINGS, "mh", str(m), low)
        steps = tuple(
            (head, tail.format(t=t))
            for head, tail in (
                pick(_STEP_TEMPLATES, "st", str(m), str(s), low) for s in range(3 + (seed >> (27 + m)) % 2)
            )
        )
        methods.append((heading, steps))
    return Article(
        title=title,
        chain=synth_chain(title),
        coauthors=coauthors,
        byline=byline,
        last_updated=f"{month} {day}, {year}",
        views=1000 + seed % 2_500_000,
        badge=("", "Approved", "Tested", "Expert")[(seed >> 31) % 4],
        intro=pick(_INTRO_TEMPLATES, "intro", low).format(t=t),
        methods=tuple(methods),
        references=tuple(
            f"https://www.example.org/synthetic-reference/{slug(title).lower()}/{i + 1}" for i in range(n_refs)
        ),
        references_on_top=n_refs > 0 and (seed >> 33) % 2 == 0,
        expert=(seed >> 35) % 3 != 0,
        synthetic_fields=(
            "chain",
            "coauthors",
            "byline",
            "last_updated",
            "views",
            "badge",
            "intro",
            "methods",
            "references",
            "references_on_top",
            "expert",
        ),
    )


@lru_cache(maxsize=1)
def default_site() -> "Site":
    """The process-wide :class:`Site` over the shipped bundle (shared by all envs)."""
    return Site()


class Site:
    """Every page the simulation can show, built from the bundle plus seeded synthesis.

    Lookups are by lower-case title / author name / category name; results are cached.
    """

    def __init__(self, bundle: dict | None = None) -> None:
        self.bundle = bundle if bundle is not None else load_bundle()
        self._curated: dict[str, dict] = self.bundle["articles"]
        self._authors: dict[str, dict] = {a["name"].lower(): a for a in self.bundle["authors"]}
        self._category_fixed: dict[str, dict] = {c["name"].lower(): c for c in self.bundle["categories"]}
        titles = list(self.bundle["titles"])
        seen = {t.lower() for t in titles}
        for rec in self._curated.values():
            if rec["title"].lower() not in seen:
                seen.add(rec["title"].lower())
                titles.append(rec["title"])
        self.all_titles: list[str] = titles
        self._title_by_lower = {t.lower(): t for t in titles}
        self._articles: dict[str, Article] = {}
        self._categories: dict[str, Category] = {}
        self._authors_cache: dict[str, Author] = {}
        self._author_index: dict[str, list[str]] | None = None
        self._category_index: dict[str, list[str]] | None = None
        self._parents: dict[str, str | None] | None = None

    # ---------------------------------------------------------------- articles
    def article(self, title: str) -> Article:
        """The article with this title (real facts over synthesis)."""
        low = title.lower()
        art = self._articles.get(low)
        if art is not None:
            return art
        exact = self._title_by_lower.get(low, title)
        base = synth_article(exact)
        rec = self._curated.get(low)
        if rec is not None:
            overrides = {k: rec[k] for k in rec.get("real_fields", []) + rec.get("curated_fields", [])}
            for key in ("chain", "coauthors", "references"):
                if key in overrides:
                    overrides[key] = tuple(overrides[key])
            if "methods" in overrides:
                overrides["methods"] = tuple((h, tuple(tuple(s) for s in steps)) for h, steps in overrides["methods"])
            first = rec.get("first_method")
            m = re.match(r"^(Method|Part) 1 (?:\1 1 of \d+: )?(.*)$", first or "")
            if m:
                overrides["method_kind"] = m.group(1)
                overrides["methods"] = ((m.group(2), base.methods[0][1]),) + base.methods[1:]
            wants_refs = rec.get("need_references") or overrides.get("references_on_top")
            if wants_refs and not base.references:
                overrides.setdefault(
                    "references",
                    tuple(
                        f"https://www.example.org/synthetic-reference/{slug(exact).lower()}/{i + 1}" for i in range(4)
                    ),
                )
            synthetic = tuple(f for f in base.synthetic_fields if f not in rec.get("real_fields", []))
            art = Article(**{**base.__dict__, "title": rec["title"], **overrides, "synthetic_fields": synthetic})
        else:
            art = base
        self._articles[low] = art
        return art

    # ----------------------------------------------------------------- authors
    def _build_author_index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for t in self.all_titles:
            rec = self._curated.get(t.lower())
            names = (rec.get("coauthors") if rec else None) or [synth_author_name(t, 0)]
            index.setdefault(names[0].lower(), []).append(t)  # listed under its first author
        return index

    def author(self, name: str) -> Author:
        """The author page of ``name`` (a real bio where the bundle has one)."""
        low = name.lower()
        cached = self._authors_cache.get(low)
        if cached is not None:
            return cached
        if self._author_index is None:
            self._author_index = self._build_author_index()
        rec = self._authors.get(low, {})
        listed = list(rec.get("articles", []))
        extra = sorted(self._author_index.get(low, []), key=lambda t: stable_int("aa", low, t.lower()))
        for t in extra:
            if t not in listed:
                listed.append(t)
        role = rec.get("role") or pick(_ROLES, "role", low)
        bio = rec.get("bio") or (
            f"{name} is a {role.lower()} and a contributor to this simulated wikiHow site. "
            "(Synthetic profile generated for the rlem-gym simulation.)"
        )
        author = self._authors_cache[low] = Author(
            name=rec.get("name", name),
            role=role,
            bio=bio,
            articles=tuple(listed[:10]),
            synthetic=not rec.get("real_bio", False),
        )
        return author

    # -------------------------------------------------------------- categories
    def _build_category_index(self) -> None:
        index: dict[str, list[str]] = {}
        parents: dict[str, str | None] = {r.lower(): None for r in ROOTS}
        names: dict[str, str] = {r.lower(): r for r in ROOTS}
        for root, (_k, subs) in TAXONOMY.items():
            for s in subs:
                parents.setdefault(s.lower(), root)
                names.setdefault(s.lower(), s)
        for rec in self._curated.values():  # curated chains define their own parents
            chain = rec.get("chain") or ()
            for i, c in enumerate(chain):
                names[c.lower()] = c
                parents[c.lower()] = chain[i - 1] if i else parents.get(c.lower())
        for t in self.all_titles:
            rec = self._curated.get(t.lower())
            chain = rec["chain"] if rec and "chain" in rec else synth_chain(t)
            for c in chain:
                index.setdefault(c.lower(), []).append(t)
        self._category_index = index
        self._parents = parents
        self._category_names = names

    def category(self, name: str) -> Category | None:
        """The category page called ``name`` (case-insensitive), or None if unknown."""
        if self._category_index is None:
            self._build_category_index()
        low = name.lower()
        if low not in self._category_names:
            return None
        cached = self._categories.get(low)
        if cached is not None:
            return cached
        fixed = self._category_fixed.get(low, {})
        listed = list(fixed.get("articles", []))
        pool = sorted(self._category_index.get(low, []), key=lambda t: stable_int("ca", low, t.lower()))
        for t in pool:
            if t not in listed:
                listed.append(t)
        subs = sorted(
            {self._category_names[c] for c, p in self._parents.items() if p and p.lower() == low},
            key=lambda s: stable_int("cs", low, s.lower()),
        )
        cat = Category(
            name=self._category_names[low],
            parent=self._parents.get(low),
            subcategories=tuple(subs[:6]),
            articles=tuple(listed[:12]),
            synthetic=not fixed.get("real", False),
        )
        self._categories[low] = cat
        return cat

    # ------------------------------------------------------------------- misc
    def about_lines(self) -> list[tuple[str, str, str]]:
        """(tag, class, text) rows of the real "why people trust wikiHow" page."""
        rows = self.bundle.get("about") or _TRUST_FALLBACK
        return [tuple(r) for r in rows]

    def search_stats(self, title: str) -> tuple[int, str, bool]:
        """(views, "N months ago", expert co-authored) shown for a title in search results.

        Views and the expert flag are the article's own, so the results screen is the same
        whatever was opened before; only the age is seeded separately.
        """
        art = self.article(title)
        seed = stable_int("stats", title.lower())
        if (seed >> 13) % 3:
            n, unit = 1 + (seed >> 9) % 11, "month"
        else:
            n, unit = 1 + (seed >> 9) % 4, "year"
        age = f"{n} {unit}{'s' if n > 1 else ''} ago"
        return art.views, age, art.expert
