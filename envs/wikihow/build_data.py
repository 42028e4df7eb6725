"""Build the WikiHow package-data bundle from the shared real-data folder (developers only).

The env never reads ``shared/data/wikihow`` at run time; it reads the one gzip JSON this
script writes (``envs/wikihow/data/wikihow_bundle.json.gz``). Run it again after the shared
data changes::

    python -m rlem_gym.envs.wikihow.build_data --src ../shared/data/wikihow

What it does: parses the task lists and sub-goal chains; fills in the sub-goal targets the
real data lacks (author / category of the 108 complementary canonical tasks) deterministically
from the title, marking those tasks ``"synthetic_targets": true``; extracts real article facts
(breadcrumb, co-authors, byline, update date, badge, intro, first method heading) from the 246
real screens; and keeps the 12,000 real titles, the stop-word list and the real "why people
trust wikiHow" and author-page text.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

from rlem_gym.atomic import atomic_write_bytes
from rlem_gym.envs.wikihow.screens import parse_screen
from rlem_gym.envs.wikihow.site import (
    BUNDLE_NAME,
    ROOTS,
    TAXONOMY,
    classify_root,
    pick,
    stable_int,
    synth_author_name,
    synth_chain,
    title_case,
)

#: breadcrumbs curated for the category tasks of the micro-canonical set. The real screens show
#: only the last two crumbs; the ancestors are our guess (marked "curated" in the bundle).
CURATED_CHAINS: dict[str, list[str]] = {
    "deal with little sisters": [
        "Education and Communications",
        "Communication Skills",
        "Conflict Resolution",
        "Dealing With Sibling Conflicts",
    ],
    "bypass youtube's regional filter": [
        "Computers and Electronics",
        "Video",
        "Video Hosting and Sharing Websites",
        "YouTube",
    ],
    "buy stocks (for beginners)": ["Finance and Business", "Investments and Trading", "Financial Stocks"],
    "get girls": ["Relationships", "Getting a Date", "Flirting"],
    "change your yahoo email address": ["Computers and Electronics", "Internet", "Email", "Yahoo Mail"],
    "choose a foam roller": ["Sports and Fitness", "Personal Fitness", "Fitness Equipment"],
    "grow finger limes": ["Home and Garden", "Gardening", "Planting and Growing"],
    "use a hair diffuser": ["Personal Care and Style", "Hair Care", "Hair Styling", "Blow Drying Hair"],
    "reduce meltdowns and tantrums in autistic children": [
        "Health",
        "Mental Health",
        "Autism Spectrum",
        "Supporting Autistic People",
    ],
}

#: top-level categories of real crumbs whose root the screens do not show (our reading).
KNOWN_ROOTS = {
    "computer hardware": "Computers and Electronics",
    "real estate": "Finance and Business",
    "lending": "Finance and Business",
    "dating": "Relationships",
    "stationery": "Education and Communications",
    "phone skills": "Education and Communications",
}


def _fix_chain(title: str, chain: list[str]) -> list[str]:
    """Complete a real (partial) breadcrumb up to a top-level category."""
    roots = {r.lower() for r in ROOTS}
    chain = [c for c in chain if c.lower() != "categories"]
    if chain and chain[0].lower() not in roots:
        first = chain[0].lower()
        for curated in CURATED_CHAINS.values():
            low = [c.lower() for c in curated]
            if first in low:
                return curated[: low.index(first)] + chain
        if first in KNOWN_ROOTS:
            return [KNOWN_ROOTS[first]] + chain
    if not chain or chain[0].lower() not in roots:
        chain = [classify_root(title)] + chain
    return chain


def extract_articles(screens: list[dict]) -> dict[str, dict]:
    """Real article facts from every article-top screen (title, crumbs, byline, intro, ...)."""
    found: dict[str, dict] = {}
    for s in screens:
        rows = parse_screen(s["screen"])
        texts = [r["text"] for r in rows]
        if "trust wikiHow" not in texts:
            continue
        ti = next(
            (i for i, r in enumerate(rows) if r["tag"] == "p" and r["text"].startswith("How to ")),
            None,
        )
        if ti is None:
            continue
        title = rows[ti]["text"][len("How to ") :]
        crumbs_rows = rows[texts.index("trust wikiHow") + 1 : ti]
        crumbs = [r["text"].strip() for r in crumbs_rows if r["text"].strip() not in ("»", "")]
        crumbs = [c.replace(" »", "") for c in crumbs]
        rec: dict = {"title": title, "crumbs": crumbs}
        names, byline, updated, refs_top, badge, intro, method = [], None, None, False, "", None, None
        for r in rows[ti + 1 :]:
            t = r["text"]
            if t in ("Co-authored by", "Written by", "Author Info") and byline is None:
                byline = t
            elif r["tag"] == "p" and r["clickable"] and byline and updated is None and t not in ("Author Info",):
                names.append(t)
            elif t.startswith("Last Updated: "):
                updated = t[len("Last Updated: ") :]
            elif t == "References" and intro is None:
                refs_top = True
            elif r["tag"] == "button" and t in ("Approved", "Tested", "Expert"):
                badge = t
            elif r["tag"] in ("div", "p") and not r["clickable"] and len(t) > 80 and intro is None:
                intro = t
            elif re.match(r"^(Method|Part) 1 ", t) and method is None:
                method = t
        rec.update(
            byline=byline or "Co-authored by",
            coauthors=names,
            last_updated=updated,
            references_on_top=refs_top,
            badge=badge,
            intro=intro,
            method=method,
        )
        found.setdefault(title.lower(), rec)
    return found


def extract_about(screens: list[dict]) -> list[list[str]]:
    for s in screens:
        rows = parse_screen(s["screen"])
        if any(r["text"] == "Information You Can Trust" for r in rows):
            out = []
            for r in rows:
                if r["attrs"].get("class") == "statusBarBackground":
                    continue
                if r["attrs"].get("alt") in ("Open navigation drawer", "Search"):
                    continue
                text = r["text"] if r["tag"] != "img" else r["attrs"].get("alt", "")
                out.append([r["tag"], r["attrs"].get("class", ""), text])
            return out
    return []


def extract_author(screens: list[dict], name: str) -> dict | None:
    for s in screens:
        rows = parse_screen(s["screen"])
        if any(r["tag"] == "img" and r["attrs"].get("alt") == name for r in rows):
            divs = [r["text"] for r in rows if r["tag"] == "div" and r["text"]]
            ps = [r["text"] for r in rows if r["tag"] == "p" and not r["clickable"]]
            return {
                "name": name,
                "role": divs[1] if len(divs) > 1 else "",
                "bio": divs[2] if len(divs) > 2 else "",
                "editorial": ps[1] if len(ps) > 1 else "",
                "real_bio": True,
            }
    return None


def extract_categories(screens: list[dict]) -> dict[str, list[str]]:
    """Real category pages: name -> article titles listed on them."""
    cats: dict[str, list[str]] = {}
    for s in screens:
        rows = parse_screen(s["screen"])
        if not any(r["text"] == "<" for r in rows):
            continue
        i = next(i for i, r in enumerate(rows) if r["text"] == "<")
        if i + 2 >= len(rows):
            continue
        name = rows[i + 2]["text"]
        listed = cats.setdefault(name, [])
        for j, r in enumerate(rows):
            t = r["text"]
            if r["tag"] == "p" and t.startswith("How to ") and len(t) > 8:
                t = t[len("How to ") :]
            elif r["tag"] == "div" and j > 0 and rows[j - 1]["text"] == "How to":
                pass
            else:
                continue
            if t not in listed:
                listed.append(t)
    return cats


def build(src: Path) -> dict:
    """Assemble the bundle dict from the shared data folder ``src``."""
    stop = [w.strip() for w in (src / "mobile-env-templates/misc/stopword.list").read_text().splitlines() if w.strip()]
    titles: list[str] = []
    seen: set[str] = set()
    for name in ("koupaee_all_val_titles.txt", "koupaee_all_test_titles.txt"):
        for line in (src / "titles" / name).read_text(encoding="utf-8").splitlines():
            t = re.sub(r"\d+$", "", line.strip()).strip()
            if t.startswith("How to "):
                t = t[len("How to ") :]
            if t and t.lower() not in seen:
                seen.add(t.lower())
                titles.append(t)
    canon = json.loads((src / "task_lists/canonical_178.json").read_text())
    exact_seen = json.loads((src / "derived/exact_article_titles_seen.json").read_text())
    facts = json.loads((src / "derived/article_facts_from_real_screens.json").read_text())
    screens = json.loads((src / "derived/rememberer_debug_screens.json").read_text())
    seen_articles = extract_articles(screens)

    def exact(lower: str, given: str | None = None) -> str:
        if given:
            return given
        if lower in exact_seen:
            return exact_seen[lower]
        if lower in seen_articles:
            return seen_articles[lower]["title"]
        return title_case(lower)

    articles: dict[str, dict] = {}
    authors: dict[str, dict] = {}
    categories: dict[str, dict] = {}

    def art(title: str) -> dict:
        return articles.setdefault(title.lower(), {"title": title, "real_fields": ["title"], "curated_fields": []})

    def curate(title: str, key: str, value) -> None:
        rec = art(title)
        rec[key] = value
        if key not in rec["real_fields"] and key not in rec["curated_fields"]:
            rec["curated_fields"].append(key)

    # real facts from screens (all articles seen), then the derived facts file
    for low, f in seen_articles.items():
        rec = art(f["title"])
        chain = _fix_chain(f["title"], [title_case(c.lower()) for c in f["crumbs"]])
        for key, val in (
            ("chain", chain),
            ("coauthors", f["coauthors"]),
            ("byline", f["byline"]),
            ("last_updated", f["last_updated"]),
            ("references_on_top", f["references_on_top"]),
            ("badge", f["badge"]),
            ("intro", f["intro"]),
        ):
            if val is None or (key == "coauthors" and not val):
                continue
            rec[key] = val
            rec["real_fields"].append(key)
        if f["method"]:
            rec["first_method"] = f["method"]
    for low, f in facts.items():
        if low not in articles:
            rec = art(f["title"])
            rec["chain"] = _fix_chain(f["title"], [title_case(c.lower()) for c in f["breadcrumb"]])
            rec["last_updated"] = f["last_updated"]
            rec["references_on_top"] = bool(f["references_link_on_first_screen"])
            rec["real_fields"] += ["chain", "last_updated", "references_on_top"]
            if f.get("coauthors"):
                rec["coauthors"] = f["coauthors"]
                rec["real_fields"].append("coauthors")
    for low, chain in CURATED_CHAINS.items():
        t = exact(low)
        rec = art(t)
        rec["chain"] = chain
        rec["real_fields"] = [k for k in rec["real_fields"] if k != "chain"]
        if "chain" not in rec["curated_fields"]:
            rec["curated_fields"].append("chain")
    # the real Trudi Griffin author page
    for name in ("Trudi Griffin, LPC, MS",):
        a = extract_author(screens, name)
        if a:
            authors[name.lower()] = {**a, "articles": []}
    editorial = next((a["editorial"] for a in authors.values() if a.get("editorial")), "")

    # real category listings
    for name, listed in extract_categories(screens).items():
        cat = categories.setdefault(name.lower(), {"name": name, "articles": [], "real": True})
        for t in listed:
            if t not in cat["articles"]:
                cat["articles"].append(t)
            if t.lower() not in articles or "chain" not in articles[t.lower()]:
                curate(t, "chain", _fix_chain(t, [name]))

    def add_author_article(name: str, title: str) -> None:
        a = authors.setdefault(name.lower(), {"name": name, "articles": [], "real_bio": False})
        if title not in a["articles"]:
            a["articles"].append(title)
        rec = art(title)
        names = list(rec.get("coauthors") or [])
        if name not in names:
            curate(title, "coauthors", [name] + names)

    def add_category_article(cat: str, title: str) -> None:
        c = categories.setdefault(cat.lower(), {"name": cat, "articles": [], "real": False})
        if title not in c["articles"]:
            c["articles"].insert(0, title) if len(c["articles"]) < 2 else c["articles"].insert(1, title)
        rec = art(title)
        chain = rec.get("chain")
        if not chain or cat.lower() not in [x.lower() for x in chain]:
            owner = next(
                (
                    r["chain"]
                    for r in articles.values()
                    if r.get("chain") and cat.lower() in [x.lower() for x in r["chain"]]
                ),
                None,
            )
            if owner:
                k = [x.lower() for x in owner].index(cat.lower())
                new = list(owner[: k + 1])
            elif cat in ROOTS:
                new = [cat, pick(TAXONOMY[cat][1], "sub", title.lower())]
            else:
                new = _fix_chain(title, [cat])
            curate(title, "chain", new)

    micro_ids = {}
    for line in (src / "task_lists/microcanon_70.txt").read_text().splitlines():
        idx, stem, tid = line.split("\t")
        micro_ids[stem] = (int(idx), tid)

    tasks = []
    for r in canon:
        stem, suffix = r["file_stem"], r["template_suffix"]
        lower = r["article_title_lower"]
        title = exact(lower, r.get("article_title_exact"))
        art(title)
        synthetic = False
        steps: list[dict] = [{"type": "search"}, {"type": "article", "title": title}]
        if r.get("steps"):
            steps = []
            for s in r["steps"]:
                if s["type"] == "article":
                    steps.append({"type": "article", "title": exact(s["title_lower"], s.get("title_exact"))})
                elif s["type"] == "author_page":
                    steps.append({"type": "author", "author": s["author"]})
                elif s["type"] == "category_page":
                    steps.append({"type": "category", "category": title_case(s["category_lower"])})
                elif s["type"] == "about_page":
                    steps.append({"type": "about"})
                else:
                    steps.append({"type": s["type"]})
        elif r.get("steps_partial"):
            for s in r["steps_partial"][2:]:
                kind, _, val = s.partition(": ")
                if kind == "author_page":
                    steps.append({"type": "author", "author": val})
                elif kind == "article":
                    steps.append({"type": "article", "title": val})
        elif suffix == 0:
            steps.append({"type": "about"})
        elif suffix == 7:
            steps.append({"type": "reference"})
        elif suffix == 4:
            synthetic = True
            rec = articles.get(title.lower(), {})
            author = (rec.get("coauthors") or [synth_author_name(title, 0)])[0]
            steps.append({"type": "author", "author": author})
            if stable_int("follow", stem) % 2 == 0:
                steps.append({"type": "article", "title": pick(titles, "follow-title", stem)})
        elif suffix == 6:
            synthetic = True
            rec = articles.get(title.lower(), {})
            chain = rec.get("chain") or list(synth_chain(title))
            curate(title, "chain", chain)
            cat = pick(chain, "target-cat", stem)
            steps.append({"type": "category", "category": cat})
            if stable_int("follow", stem) % 2 == 0:
                steps.append({"type": "article", "title": pick(titles, "follow-title", stem)})
        # make the site consistent with the chain
        main = steps[1]["title"]
        for i, s in enumerate(steps):
            if s["type"] == "author":
                add_author_article(s["author"], main)
                if i + 1 < len(steps) and steps[i + 1]["type"] == "article":
                    add_author_article(s["author"], steps[i + 1]["title"])
            elif s["type"] == "category":
                add_category_article(s["category"], main)
                if i + 1 < len(steps) and steps[i + 1]["type"] == "article":
                    add_category_article(s["category"], steps[i + 1]["title"])
            elif s["type"] == "reference":
                art(main)["need_references"] = True
        if stem in micro_ids:
            tid = micro_ids[stem][1]
        else:
            tid = _task_id(stem, steps)
        tasks.append(
            {
                "task_id": tid,
                "file_stem": stem,
                "template_suffix": suffix,
                "title_lower": lower,
                "steps": steps,
                "sets": r["sets"],
                "microcanon_index": micro_ids.get(stem, (None,))[0],
                "synthetic_targets": synthetic,
            }
        )
    by_stem = {t["file_stem"]: t["task_id"] for t in tasks}
    sets = {
        "microcanon70": [tid for _i, tid in sorted(micro_ids.values())],
        "canonical178": [t["task_id"] for t in tasks],
    }
    for key, name in (("train_S0", "rememberer_train_S0.txt"), ("train_S1", "rememberer_train_S1.txt")):
        stems = [x.strip() for x in (src / "task_lists" / name).read_text().splitlines() if x.strip()]
        sets[key] = [by_stem[s] for s in stems]
    return {
        "version": 1,
        "stopwords": stop,
        "titles": titles,
        "tasks": tasks,
        "sets": sets,
        "articles": articles,
        "authors": list(authors.values()),
        "categories": list(categories.values()),
        "about": extract_about(screens),
        "author_editorial": editorial,
    }


def _task_id(stem: str, steps: list[dict]) -> str:
    base = stem.rsplit("-", 1)[0].lower()
    parts = [f"search_{base}"]
    for s in steps[1:]:
        if s["type"] == "article":
            parts.append(f"article_{s['title'].lower()}")
        elif s["type"] == "author":
            parts.append("author_page")
        elif s["type"] == "category":
            parts.append(f"category_page_{s['category'].lower()}")
        elif s["type"] == "about":
            parts.append("about_page")
        elif s["type"] == "reference":
            parts.append("check_reference")
    return "-".join(parts)


def screen_stats(screens: list[dict]) -> dict:
    """Reference statistics of the real screens (tag vocabulary, attributes, counts per page type)."""
    tags: dict[str, set[str]] = {}
    counts: dict[str, list[int]] = {}
    for s in screens:
        counts.setdefault(s["page_type_heuristic"], []).append(len(s["screen"].split("\n")))
        for r in parse_screen(s["screen"]):
            tags.setdefault(r["tag"], set()).update(r["attrs"])
    allc = [c for v in counts.values() for c in v]
    return {
        "source": "derived/rememberer_debug_screens.json (246 real screens, Apache-2.0 / CC BY-NC-SA 3.0)",
        "attributes_per_tag": {t: sorted(a) for t, a in sorted(tags.items())},
        "element_counts": {k: [min(v), max(v), len(v)] for k, v in sorted(counts.items())},
        "element_counts_all": [min(allc), max(allc), len(allc)],
    }


def write_test_data(src: Path, out_dir: Path) -> None:
    """Copy the reference statistics and the labelled replay files the tests need."""
    import shutil

    screens = json.loads((src / "derived/rememberer_debug_screens.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = json.dumps(screen_stats(screens), indent=1).encode()
    atomic_write_bytes(out_dir / "wikihow_screen_stats.json", stats)
    for f in sorted((src / "rememberer/replay-data").glob("*_W4(eA).jsonl")):
        shutil.copyfile(f, out_dir / ("wikihow_replay_" + f.name.replace("(", "_").replace(")", "")))


def main(argv: list[str] | None = None) -> None:
    """CLI: build the bundle from ``--src`` into the package data folder."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, required=True, help="path to shared/data/wikihow")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / BUNDLE_NAME)
    ap.add_argument("--test-data", type=Path, default=None, help="also write the tests' reference files here")
    args = ap.parse_args(argv)
    if not (args.src / "task_lists/canonical_178.json").exists():
        raise SystemExit(f"--src {args.src} does not look like shared/data/wikihow (no task_lists/)")
    bundle = build(args.src)
    data = gzip.compress(json.dumps(bundle, ensure_ascii=False, sort_keys=True).encode("utf-8"), mtime=0)
    atomic_write_bytes(args.out, data)
    if args.test_data is not None:
        write_test_data(args.src, args.test_data)
    print(f"wrote {args.out} ({len(data) / 1e6:.2f} MB, {len(bundle['tasks'])} tasks, {len(bundle['titles'])} titles)")


if __name__ == "__main__":
    main()
