"""Agent variant labels: parsing, canonical round trip, errors, the comma list and the reference row."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlem_gym.agents.variants import (
    VARIANT_KEYS,
    AgentVariant,
    VariantError,
    parse_agent_list,
    parse_variant,
    reference_variant,
    split_agent_list,
)


@pytest.mark.parametrize(
    ("text", "label", "params", "untrained"),
    [
        ("rememberer", "rememberer", {}, False),
        ("rememberer@untrained", "rememberer@untrained", {}, True),
        ("Rememberer[ discouraged = False ]", "rememberer[discouraged=false]", {"discouraged": False}, False),
        (
            "rememberer[n_step=1, discouraged=false]@untrained",
            "rememberer[discouraged=false,n_step=1]@untrained",
            {"discouraged": False, "n_step": 1},
            True,
        ),
        ("rememberer[n_step=none]", "rememberer[n_step=none]", {"n_step": None}, False),
        (
            "rememberer[gamma=1e-1,init=webshop:E1]",
            "rememberer[gamma=0.1,init=webshop:E1]",
            {"gamma": 0.1, "init": "webshop:E1"},
            False,
        ),
        ("static[exemplars=handwritten]", "static[exemplars=handwritten]", {"exemplars": "handwritten"}, False),
        ("heuristic[policy=keywords]", "heuristic[policy=keywords]", {"policy": "keywords"}, False),
        ("oracle", "oracle", {}, False),
        ("react[screen=compact]", "react[screen=compact]", {"screen": "compact"}, False),
    ],
)
def test_parse_and_canonical_label(text, label, params, untrained):
    v = parse_variant(text)
    assert v.label == label and str(v) == label
    assert v.settings == params and v.untrained is untrained
    assert parse_variant(v.label) == v  # the canonical label parses back to the same variant


def test_settings_split_memory_from_agent():
    v = parse_variant("rememberer[n_step=1,discouraged=false,k=3,init=webshop:E2]")
    assert v.memory_settings == {"n_step": 1}
    assert v.agent_settings == {"discouraged": False, "k": 3}
    assert v.get("init") == "webshop:E2" and v.trains
    assert not parse_variant("rememberer@untrained").trains and not parse_variant("static").trains
    replay = parse_variant("rememberer[learning=success_replay,discouraged=false]")
    assert replay.memory_settings == {"learning": "success_replay"} and replay.agent_settings == {"discouraged": False}


def test_a_success_replay_variant_builds_its_memory_with_that_rule():
    from rlem_gym.benchmarks.build import memory_settings
    from rlem_gym.benchmarks.config import BenchConfig
    from rlem_gym.memory import ExperienceMemory
    from rlem_gym.agents import get_adapter

    settings = memory_settings(BenchConfig(env="wikihow"), parse_variant("rememberer[learning=success_replay]"))
    memory = ExperienceMemory(get_adapter("wikihow").make_matcher(), **settings)
    assert memory.learning == "success_replay" and memory.n_step is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("foo", "unknown agent 'foo'"),
        ("rememberer[x=1]", "no setting x"),
        ("heuristic[n_step=1]", "no setting n_step"),
        ("static@untrained", "rememberer only"),
        ("rememberer@trained", "unknown stage"),
        ("rememberer[n_step]", "not key=value"),
        ("rememberer[n_step=1,]", "empty setting"),
        ("rememberer[n_step=1]x", "one pair of brackets"),
        ("rememberer[[n_step=1]]", "one pair of brackets"),
        ("rememberer[n_step=1,n_step=2]", "set twice"),
        ("rememberer[init=a b]", "may hold only"),
        ("remem berer", "not an agent name"),
    ],
)
def test_bad_labels_say_why(text, message):
    with pytest.raises(VariantError, match=message):
        parse_variant(text)


def test_split_and_parse_agent_list():
    text = "rememberer, rememberer[n_step=1,discouraged=false],static , heuristic"
    assert split_agent_list(text) == ["rememberer", "rememberer[n_step=1,discouraged=false]", "static", "heuristic"]
    labels = [v.label for v in parse_agent_list(text)]
    assert labels == ["rememberer", "rememberer[discouraged=false,n_step=1]", "static", "heuristic"]
    assert [v.label for v in parse_agent_list(["oracle", "rememberer@untrained,react"])] == [
        "oracle",
        "rememberer@untrained",
        "react",
    ]
    with pytest.raises(VariantError, match="same variant"):
        parse_agent_list("rememberer[n_step=1,k=2],rememberer[k=2, n_step=1]")
    with pytest.raises(VariantError, match="without"):
        split_agent_list("rememberer[n_step=1")
    with pytest.raises(VariantError, match="no agents"):
        parse_agent_list(" , ")


def test_reference_is_the_trained_rememberer():
    vs = parse_agent_list("static,rememberer@untrained,rememberer[n_step=1],rememberer")
    assert reference_variant(vs).label == "rememberer"
    vs = parse_agent_list("static,rememberer@untrained,rememberer[n_step=1]")
    assert reference_variant(vs).label == "rememberer[n_step=1]"
    assert reference_variant(parse_agent_list("heuristic,oracle,rememberer@untrained")) is None


_values = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(float),
    st.sampled_from(["webshop:E1", "handwritten", "keywords", "a.b", "first_valid", "x-y/z", "e5"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(VARIANT_KEYS)).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.dictionaries(st.sampled_from(VARIANT_KEYS[name] or ("_",)), _values, max_size=4)
            if VARIANT_KEYS[name]
            else st.just({}),
            st.booleans() if name == "rememberer" else st.just(False),
        )
    )
)
def test_round_trip_property(case):
    name, params, untrained = case
    v = AgentVariant(name, tuple(sorted(params.items())), untrained)
    assert parse_variant(v.label) == v
