"""Screens of the simulated wikiHow app: one line of simplified HTML per visible leaf view.

The format is the one Mobile-Env / Rememberer show the agent (see the 246 real screens):
``<tag class=".." alt=".." value=".." type="text" id="N" clickable="true|false">text</tag>``
with the tags ``p``, ``div``, ``button``, ``img`` and ``input``. Ids are positions on the
current screen. A page is a fixed header, a scrollable body (a window of ``window`` rows
moved by SCROLL) and the status-bar row.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from rlem_gym.envs.wikihow.site import Article, Site, pick, slug, stable_int

#: body rows visible at once per page kind (chosen so element counts match the real screens).
WINDOW = {"home": 8, "search": 51, "article": 16, "author": 9, "category": 21, "about": 8, "reference": 12}
#: rows skipped per SCROLL (a screenful minus some overlap, like a fling on the phone).
OVERLAP = 2
RESULTS_PER_SEARCH = 20


@dataclass(frozen=True)
class Element:
    """One leaf view. ``target`` is what a tap does, e.g. ``("article", title)``."""

    tag: str
    text: str = ""
    cls: str = ""
    alt: str | None = None
    value: str | None = None
    clickable: bool = False
    target: tuple = ()
    is_input: bool = False
    """True for text inputs and the search buttons (INPUT types and submits a search)."""


_NAV = Element("button", alt="Open navigation drawer", clickable=True, target=("home",))
_SEARCH_BTN = Element("img", cls="search button", alt="Search", clickable=True, target=("search_open",), is_input=True)
_MORE = Element("img", alt="More options", clickable=True, target=("noop",))
_LOGO = Element("img", cls="wikihow toolbar logo")
STATUS_BAR = Element("div", cls="statusBarBackground")


def _esc_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _esc_attr(s: str) -> str:
    return _esc_text(s).replace('"', "&quot;")


def render_element(index: int, e: Element) -> str:
    """One screen line for element ``e`` shown with id ``index``."""
    attrs = ""
    if e.cls:
        attrs += f' class="{_esc_attr(e.cls)}"'
    if e.alt is not None:
        attrs += f' alt="{_esc_attr(e.alt)}"'
    if e.tag == "input":
        if e.value:
            attrs += f' value="{_esc_attr(e.value)}"'
        attrs += ' type="text"'
    attrs += f' id="{index}" clickable="{"true" if e.clickable else "false"}"'
    if e.tag in ("img", "input"):
        return f"<{e.tag}{attrs}>"
    return f"<{e.tag}{attrs}>{_esc_text(e.text)}</{e.tag}>"


_ROW = re.compile(r'^<(\w+)((?: [a-z]+="[^"]*")*)>(.*?)(?:</\w+>)?$')
_ATTR = re.compile(r' ([a-z]+)="([^"]*)"')


def parse_screen(screen: str) -> list[dict]:
    """Screen lines (ours or real recorded ones) as dicts {id, tag, attrs, text, clickable, cls, alt}.

    ``attrs`` and ``cls`` are the raw attribute strings, ``text`` and ``alt`` are unescaped, ``id`` is -1
    when the line has none. Lines that are not one element are skipped.
    """
    rows = []
    for line in screen.split("\n"):
        m = _ROW.match(line)
        if not m:
            continue
        attrs = dict(_ATTR.findall(m.group(2)))
        rows.append(
            {
                "id": int(attrs.get("id", -1)),
                "tag": m.group(1),
                "attrs": attrs,
                "text": html.unescape(m.group(3)),
                "clickable": attrs.get("clickable") == "true",
                "cls": attrs.get("class", ""),
                "alt": html.unescape(attrs.get("alt", "")),
            }
        )
    return rows


#: screen views: "full" is the app's HTML as recorded, "compact" one short line per element an action can use
SCREEN_VIEWS = ("full", "compact")
_WORDY = re.compile(r"\w")


def compact_screen(text: str) -> str:
    """``text`` with each screen line written as ``[id] tag: label``, keeping only what an action can use.

    An element is kept when it is clickable or an input and has a label (its text, ``alt`` or
    ``value``) with a letter or digit; non-clickable text, empty views and bullets are dropped,
    and so are the ``class`` and ``clickable`` attributes. Element ids stay the screen's, so
    ``CLICK(n)`` means the same element in both views. Lines that are not an element (a prompt's
    other text around a screen) are kept as they are, so a whole exemplar can be passed.
    """
    out = []
    for line in text.split("\n"):
        rows = parse_screen(line)
        if not rows or rows[0]["id"] < 0:
            out.append(line)
            continue
        row = rows[0]
        is_input = row["tag"] == "input"
        if not (row["clickable"] or is_input):
            continue
        value = html.unescape(row["attrs"].get("value", ""))
        label = " ".join((value if is_input else row["text"] or row["alt"]).split())
        if is_input or _WORDY.search(label):
            out.append(f"[{row['id']}] {row['tag']}: {label}")
    return "\n".join(out)


def check_screen_view(view: str) -> str:
    """``view`` if it is one of :data:`SCREEN_VIEWS`, else a ValueError that lists them."""
    if view not in SCREEN_VIEWS:
        raise ValueError(f"screen must be one of {', '.join(SCREEN_VIEWS)}, got {view!r}")
    return view


def _hexid(*parts: str) -> str:
    return format(0x62E0000000000 + stable_int(*parts) % 0xFFFFFFFFFF, "x")


def _article_card(title: str, with_expert: bool) -> list[Element]:
    go = ("article", title)
    rows = [
        Element(
            "img",
            cls=_hexid("card", title),
            alt=f"-crop-375-300-375px-nowatermark-{slug(title)}-Step-{1 + stable_int('img', title) % 20}.jpg",
            clickable=True,
            target=go,
        ),
        Element("p", "How to", clickable=True, target=go),
        Element("div", title, clickable=True, target=go),
    ]
    if with_expert:
        rows.append(Element("div", "Expert", clickable=True, target=go))
    return rows


def home_body(featured: list[str]) -> tuple[list[Element], list[Element]]:
    """Home: the toolbar (navigation, logo, search) and a few featured article titles."""
    header = [_NAV, _LOGO, _SEARCH_BTN]
    body = [Element("div", cls="webView", clickable=True, target=("noop",))]
    for t in featured:
        body.append(Element("div", f"How to {t}", clickable=True, target=("article", t)))
    return header, body


def search_body(site: Site, query: str, results: list[str]) -> tuple[list[Element], list[Element]]:
    """Search results: the query in the input, then per result title, views, age, badge."""
    header = [
        _NAV,
        Element("input", cls="search src text", value=query, clickable=True, target=("noop",), is_input=True),
        Element("img", cls="search close btn", alt="Clear query", clickable=True, target=("clear",)),
    ]
    body: list[Element] = []
    for t in results:
        go = ("article", t)
        views, age, expert = site.search_stats(t)
        body += [
            Element("div", f"How to {t}", clickable=True, target=go),
            Element("div", "• ", clickable=True, target=go),
            Element("p", f"{views:,} views", clickable=True, target=go),
            Element("div", "• ", clickable=True, target=go),
            Element("p", "Updated", clickable=True, target=go),
            Element("p", f" {age}", clickable=True, target=go),
        ]
        if expert:
            body += [
                Element("div", "• ", clickable=True, target=go),
                Element("p", "Expert Co-Authored", clickable=True, target=go),
            ]
    if query and not results:
        body.append(Element("p", f"No results for {query}"))
    return header, body


def article_body(art: Article, crumb_offset: int = 0) -> tuple[list[Element], list[Element]]:
    """An article: trust link, breadcrumb (scrolls sideways), title, byline, intro, methods, footer."""
    header = [_NAV, _SEARCH_BTN, _MORE]
    about = ("about",)
    body = [
        Element("p", "Learn why people ", clickable=True, target=about),
        Element("p", "trust wikiHow", clickable=True, target=about),
    ]
    chain = art.chain
    end = max(1, len(chain) - crumb_offset)
    if end >= 2:
        parent, leaf = chain[end - 2], chain[end - 1]
        body.append(Element("p", parent.upper(), clickable=True, target=("category", parent)))
    else:
        leaf = chain[0]
        body.append(Element("p", "CATEGORIES", clickable=True, target=("noop",)))
    body += [Element("p", " »"), Element("p", leaf.upper(), clickable=True, target=("category", leaf))]
    body.append(Element("p", art.full_title, clickable=True, target=("noop",)))
    first = art.coauthors[0]
    if art.byline == "Author Info":
        body.append(Element("p", "Author Info", clickable=True, target=("author", first)))
    else:
        body += [
            Element("p", art.byline),
            Element("p", " "),
            Element("p", first, clickable=True, target=("author", first)),
        ]
        for name in art.coauthors[1:2]:
            body += [Element("p", " and "), Element("p", name, clickable=True, target=("author", name))]
    body.append(Element("button", f"Last Updated: {art.last_updated}", clickable=True, target=("noop",)))
    ref = ("reference", art.title)
    if art.references_on_top and art.references:
        body += [Element("p", "References", clickable=True, target=ref), Element("p", " ")]
    if art.badge:
        body.append(Element("button", art.badge, clickable=True, target=("noop",)))
    body.append(Element("div", art.intro))
    kind = art.method_kind
    n = len(art.methods)
    step_no = 0
    for mi, (heading, steps) in enumerate(art.methods, start=1):
        body.append(Element("div", f"{kind} {mi} {kind} {mi} of {n}: {heading}"))
        for si, (head, tail) in enumerate(steps, start=1):
            step_no += 1
            body += [
                Element("img", alt=f"v4-460px-{slug(art.title)}-Step-{step_no}.jpg"),
                Element("div", str(si)),
                Element("p", head),
                Element("p", tail),
            ]
            if art.references and step_no % 3 == 0:
                r = 1 + (step_no // 3 - 1) % len(art.references)
                body.append(Element("button", f"Link to Reference {r}", cls=f" ref-{r}", clickable=True, target=ref))
    verb = "written" if art.byline == "Written by" else "co-authored"
    body += [
        Element("div", cls="social proof anchor", clickable=True, target=("noop",)),
        Element("p", f"This article was {verb} by "),
        Element("p", first, clickable=True, target=("author", first)),
        Element("p", f". {first} is a wikiHow contributor."),
        Element("div", f"Co-authors: {len(art.coauthors) + art.views % 7}"),
        Element("div", f"Updated: {art.last_updated}", cls="sp modified"),
        Element("div", f"Views: {art.views:,}"),
        Element("p", "Categories: "),
        Element("p", chain[-1], clickable=True, target=("category", chain[-1])),
    ]
    if art.references:
        body.append(Element("p", "References", clickable=True, target=ref))
    body += [
        Element("div", "Is this article up to date?", cls="article rating header"),
        Element("button", "Yes", cls="gatAccuracyYes", clickable=True, target=("noop",)),
        Element("button", "No", cls="gatAccuracyNo", clickable=True, target=("noop",)),
    ]
    return header, body


def reference_body(art: Article) -> tuple[list[Element], list[Element]]:
    """The numbered reference list of an article."""
    header = [_NAV, _SEARCH_BTN, _MORE]
    body = [Element("div", "References")]
    for i, ref in enumerate(art.references, start=1):
        body += [Element("div", str(i)), Element("p", f"↑ {ref}", clickable=True, target=("noop",))]
    return header, body


def author_body(site: Site, name: str, editorial: str) -> tuple[list[Element], list[Element]]:
    """An author page: picture, name, role, bio, editorial note, then their articles."""
    a = site.author(name)
    header = [_NAV, _SEARCH_BTN]
    body = [
        Element("img", alt=a.name),
        Element("p", "Website", clickable=True, target=("noop",)),
        Element("p", "+ Follow", clickable=True, target=("noop",)),
        Element("div", a.name),
        Element("div", a.role),
        Element("div", a.bio),
        Element("div", ""),
        Element("p", "wikiHow's Editorial Process"),
        Element("p", editorial),
        Element("div", f"Articles by {a.name}"),
    ]
    for t in a.articles:
        body += _article_card(t, with_expert=False)
    return header, body


def category_body(site: Site, name: str) -> tuple[list[Element], list[Element]]:
    """A category page: (banner and search for top-level ones), parent link, blurb, topics, articles."""
    c = site.category(name)
    header = [_NAV, _SEARCH_BTN]
    body: list[Element] = []
    if c.parent is None:
        body += [
            Element("div", c.name, cls="category banner title", clickable=True, target=("noop",)),
            Element("input", cls="category banner search input", clickable=True, target=("noop",), is_input=True),
            Element("button", cls="category banner submit", clickable=True, target=("noop",)),
        ]
    body += [
        Element("p", "<", clickable=True, target=("parent", c.parent or "")),
        Element("div", "", clickable=True, target=("noop",)),
        Element("div", c.name, clickable=True, target=("noop",)),
        Element(
            "p",
            f"Learn everything you want about {c.name} with the wikiHow {c.name} Category. Learn about topics such as ",
            clickable=True,
            target=("noop",),
        ),
    ]
    topics = list(c.articles[:3])
    for i, t in enumerate(topics):
        body.append(Element("p", f"How to {t}", clickable=True, target=("article", t)))
        if i < len(topics) - 1:
            body.append(Element("p", ", ", clickable=True, target=("noop",)))
    body.append(
        Element(
            "p",
            ", and more with our helpful step-by-step instructions with photos and videos.",
            clickable=True,
            target=("noop",),
        )
    )
    if c.subcategories:
        body.append(Element("div", "Featured Topics", clickable=True, target=("noop",)))
        for s in c.subcategories:
            go = ("category", s)
            body += [
                Element("img", alt=f"-crop-250-100-150px-{slug(s)}", clickable=True, target=go),
                Element("div", s, clickable=True, target=go),
            ]
    label = pick(("Featured Articles", f"Articles about {c.name}"), "label", c.name.lower())
    body.append(Element("div", label, clickable=True, target=("noop",)))
    for t in c.articles:
        body += _article_card(t, with_expert=site.article(t).expert)
    return header, body


def about_body(site: Site) -> tuple[list[Element], list[Element]]:
    """The real "why people trust wikiHow" page."""
    header = [_NAV, _SEARCH_BTN]
    body = []
    for tag, cls, text in site.about_lines():
        if tag == "img":
            body.append(Element("img", cls=cls, alt=text, clickable=True, target=("noop",)))
        else:
            body.append(Element(tag, text, cls=cls, clickable=True, target=("noop",)))
    return header, body
