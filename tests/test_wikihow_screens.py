"""WikiHow screens look like the real ones, and real recorded action sequences replay to the same sub-goals.

Reference data (tests/data, see tests/data/WIKIHOW_DATA_LICENSE.md) was written by
``python -m rlem_gym.envs.wikihow.build_data --src ../shared/data/wikihow --test-data tests/data``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from rlem_gym.envs.wikihow import screens
from rlem_gym.envs.wikihow.env import WikiHowEnv
from rlem_gym.envs.wikihow.site import Site

DATA = Path(__file__).parent / "data"
LINE = re.compile(r'^<(p|div|button|img|input)((?: [a-z]+="[^"]*")*)>(?:(.*)</\1>)?$')
ATTR = re.compile(r' ([a-z]+)="([^"]*)"')
#: our page kind -> the heuristic page types of the real screens it corresponds to
REAL_KIND = {
    "search": ["search_results"],
    "article": ["article_top", "other_scrolled"],
    "category": ["category_top", "other_scrolled"],
    "about": ["about_trust_page"],
    "author": ["author_top", "other_scrolled"],
}


@pytest.fixture(scope="module")
def stats() -> dict:
    return json.loads((DATA / "wikihow_screen_stats.json").read_text())


def visit_pages(seed: int = 0, n: int = 1500):
    """(page, screen) pairs from a random valid-action walk over the canonical tasks."""
    env = WikiHowEnv(task_set="canonical178")
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    for _ in range(n):
        yield info["page"], obs
        roll = rng.random()
        if roll < 0.6:
            ids = info["clickable_ids"]
            a = f"CLICK({ids[rng.integers(len(ids))]})"
        elif roll < 0.75:
            a = f"INPUT({info['input_ids'][0]}, {env.tasks[rng.integers(env.num_tasks)].title_lower})"
        elif roll < 0.9:
            a = f"SCROLL({rng.choice(['UP', 'DOWN', 'LEFT', 'RIGHT'])})"
        else:
            a = "GOBACK"
        obs, _r, term, _t, info = env.step(a)
        if term:
            obs, info = env.reset()


def test_tag_vocabulary_and_attribute_syntax_match_real_screens(stats):
    allowed = {t: set(a) for t, a in stats["attributes_per_tag"].items()}
    seen_pages, seen_tags = set(), set()
    for page, screen in visit_pages():
        seen_pages.add(page)
        for i, line in enumerate(screen.split("\n")):
            m = LINE.match(line)
            assert m, line
            tag, attrs = m.group(1), ATTR.findall(m.group(2))
            names = [a for a, _v in attrs]
            assert set(names) <= allowed[tag], line
            assert names[-2:] == ["id", "clickable"] and attrs[-2][1] == str(i), line
            assert attrs[-1][1] in ("true", "false")
            if tag == "input":
                assert ("type", "text") in attrs
            seen_tags.add(tag)
    assert seen_tags == set(allowed)
    assert seen_pages == {"home", "search", "article", "author", "category", "about", "reference"}


def test_element_counts_per_page_type_are_within_the_real_range(stats):
    real = stats["element_counts"]
    lo_all, hi_all = stats["element_counts_all"][:2]
    counts: dict[str, list[int]] = {}
    for page, screen in visit_pages(seed=1):
        if page == "search" and ' value="' not in screen:
            page = "search (empty query; no real counterpart)"
        counts.setdefault(page, []).append(len(screen.split("\n")))
    for page, ns in counts.items():
        kinds = REAL_KIND.get(page)
        lo = min(real[k][0] for k in kinds) if kinds else lo_all
        hi = max(real[k][1] for k in kinds) if kinds else hi_all
        assert lo <= min(ns) and max(ns) <= hi, (page, min(ns), max(ns), lo, hi)
    # article and search tops sit where the real ones do
    assert real["article_top"][0] <= int(np.median(counts["article"])) <= real["article_top"][1]
    assert real["search_results"][0] <= int(np.median(counts["search"])) <= real["search_results"][1]


def test_search_screen_does_not_depend_on_what_was_opened_before():
    site = Site()  # fresh: no article built yet

    def search_then_open() -> str:
        env = WikiHowEnv(task_set=["make_a_lei-4"])
        env.site = site
        obs, _info = env.reset(options={"task_index": 0})
        obs = env.step("INPUT(2, make a lei)")[0]
        for i, row in enumerate(obs.split("\n")):
            if row.endswith(">How to Make a Lei</div>"):
                env.step(f"CLICK({i})")
                return obs
        raise AssertionError(obs)

    first = search_then_open()
    assert search_then_open() == first
    art = site.article("Make a Lei")
    assert f">{art.views:,} views</p>" in first
    assert site.search_stats("Make a Lei")[::2] == (art.views, art.expert)


def test_category_cards_flag_expert_articles_as_the_articles_do():
    site = Site()
    for name in ("Crafts", "Hobbies and Crafts", "Financial Stocks"):
        cat = site.category(name)
        _header, body = screens.category_body(site, name)
        flagged = {e.target[1] for e in body if e.text == "Expert"}
        assert flagged == {t for t in cat.articles if site.article(t).expert}, name


# ---------------------------------------------------------------- replays
_ELEM = re.compile(r'<(\w+)((?: [a-z]+="[^"]*")*)>(?:(.*?)</\w+>)?')
#: file -> (task, sub-goals the recorded actions reach under the task definition)
REPLAYS = {
    "wikihow_replay_make_lei_W4_eA.jsonl": ("make_a_lei-4", 4),
    "wikihow_replay_bypass_youtube_W4_eA.jsonl": ("bypass_youtubeP27s_regional_filter-6", 4),
    "wikihow_replay_deal_sister_W4_eA.jsonl": ("deal_with_little_sisters-6", 3),
    "wikihow_replay_buy_stocks_W4_eA.jsonl": ("buy_stocks_P28for_beginnersP29-6", 4),
    "wikihow_replay_get_girls_W4_eA.jsonl": ("get_girls-6", 4),
}


def _screen_rows(obs: str) -> list[tuple[int, str, str, str]]:
    rows = []
    for line in obs.split("\n"):
        m = _ELEM.match(line)
        attrs = dict(ATTR.findall(m.group(2)))
        rows.append((int(attrs["id"]), html.unescape(m.group(3) or ""), attrs.get("class", ""), attrs.get("clickable")))
    return rows


def map_action(env: WikiHowEnv, obs: str, info: dict, action: str, label: str) -> str | None:
    """Our action for a recorded one, found by the element's label; None if it does not map."""
    if action.startswith("SCROLL"):
        return action.upper()
    m = _ELEM.search(label)
    cls = dict(ATTR.findall(m.group(2))).get("class", "") if m else ""
    text = html.unescape(m.group(3) or "").strip().lower() if m else ""
    if action.startswith("INPUT"):  # (one recorded label is malformed HTML: type by position)
        typed = action[action.index(",") + 1 : -1].strip()
        rows = {i: c for i, _t, c, _k in _screen_rows(obs)}
        same = [i for i in info["input_ids"] if rows.get(i) == cls]
        return f"INPUT({(same or info['input_ids'])[0]}, {typed})"
    for i, t, _c, clickable in _screen_rows(obs):
        if clickable == "true" and t.strip().lower() == text and text:
            return f"CLICK({i})"
    return None


@pytest.mark.parametrize("name", sorted(REPLAYS))
def test_real_replays_reach_the_same_subgoals(name):
    task, expected = REPLAYS[name]
    env = WikiHowEnv(task_set=[task])
    obs, info = env.reset(options={"task_index": 0})
    mapped = 0
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        action, _sep, label = line.partition(" <-> ")
        ours = map_action(env, obs, info, action.strip(), label)
        if ours is None:
            continue
        obs, _r, term, _t, info = env.step(ours)
        assert info["last_action_error"] == "", (ours, info["last_action_error"])
        mapped += 1
        if term:
            break
    assert mapped >= 3
    assert info["subgoals_done"] == expected, (name, info["subgoals_done"])


def test_compact_screen_keeps_every_usable_element_under_its_id():
    """Every clickable or input element with a label is one ``[id] tag: label`` line; nothing else is."""
    n_screens = full_chars = compact_chars = 0
    for _page, obs in visit_pages(seed=3, n=400):
        rows = screens.parse_screen(obs)
        compact = screens.compact_screen(obs)
        lines = compact.split("\n") if compact else []
        wanted = []
        for r in rows:
            label = r["attrs"].get("value", "") if r["tag"] == "input" else (r["text"] or r["alt"])
            label = " ".join(html.unescape(label).split())
            if (r["clickable"] or r["tag"] == "input") and (r["tag"] == "input" or re.search(r"\w", label)):
                wanted.append(f"[{r['id']}] {r['tag']}: {label}")
        assert lines == wanted
        assert "clickable=" not in compact and "class=" not in compact
        n_screens += 1
        full_chars += len(obs)
        compact_chars += len(compact)
    assert n_screens == 400
    assert compact_chars < full_chars / 2  # the point of the view: a screen in well under half the text


def test_compact_screen_on_a_recorded_screen_and_around_other_text():
    recorded = (
        '<button alt="Open navigation drawer" id="0" clickable="true"></button>\n'
        '<input class="search src text" value="Do ruby rose hair " type="text" id="1" clickable="true">\n'
        '<div class="webView" id="3" clickable="true"></div>\n'
        '<div id="4" clickable="true">• </div>\n'
        '<p id="6" clickable="false">Written by</p>\n'
        '<div id="11" clickable="true">How to Dye Your Hair &amp; Keep It</div>\n'
        '<div class="statusBarBackground" id="54" clickable="false"></div>'
    )
    assert screens.compact_screen(recorded) == (
        "[0] button: Open navigation drawer\n[1] input: Do ruby rose hair\n[11] div: How to Dye Your Hair & Keep It"
    )
    framed = f"Screen:\n{recorded}\nInstruction:\nAccess the article"
    assert screens.compact_screen(framed).startswith("Screen:\n[0] button: Open navigation drawer\n")
    assert screens.compact_screen(framed).endswith(
        "[11] div: How to Dye Your Hair & Keep It\nInstruction:\nAccess the article"
    )
    with pytest.raises(ValueError, match="full, compact"):
        screens.check_screen_view("short")
