"""The shipped initial experience pools: ids, the importer on every pool, the env formats, exemplars."""

from __future__ import annotations

import gymnasium as gym
import pytest

import rlem_gym  # noqa: F401  (registers the ids)
from rlem_gym.agents.pools import DEFAULT_POOLS, POOLS, import_pool, pool_exemplars, pool_info, pool_items, resolve_pool
from rlem_gym.envs.webshop import page_type
from rlem_gym.envs.webshop.pages import from_site_layout, parse_site_layout
from rlem_gym.memory import MemoryFormatError

#: records per shipped pool as imported (WebShop in the env's default "text" mode: 4 records, of
#: which the item pages before and after the option click are one text)
RECORDS = {
    "webshop:E0": 3,
    "webshop:E1": 3,
    "webshop:E2": 3,
    "wikihow:init": 2,
    "wikihow:init2": 2,
    "wikihow:init3": 2,
    "wikihow:init4": 2,
    "wikihow:init5": 2,
    "wikihow:init6": 2,
    "wikihow:annotated": 38,
}


def test_every_pool_is_shipped_and_named():
    assert set(POOLS) == set(RECORDS)
    for pid, info in POOLS.items():
        assert info.path.is_file(), info.path
        assert (info.path.parent / "LICENSE").is_file() and (info.path.parent / "SOURCE.md").is_file()
        assert info.id in (info.path.parent / "SOURCE.md").read_text()
    assert pool_info("wikihow:E0").id == "wikihow:init" == DEFAULT_POOLS["wikihow"]
    assert pool_info("WebShop:E1").id == "webshop:E1"
    with pytest.raises(ValueError, match="unknown pool 'webshop:E9'"):
        pool_info("webshop:E9")
    with pytest.raises(ValueError, match="is a webshop pool, not a wikihow one"):
        resolve_pool("webshop:E0", "wikihow")
    with pytest.raises(ValueError, match="say which env"):
        resolve_pool(POOLS["wikihow:init"].path)
    assert resolve_pool(str(POOLS["wikihow:init"].path), "wikihow") == ("wikihow", POOLS["wikihow:init"].path)


@pytest.mark.parametrize("pid", sorted(RECORDS))
def test_importer_reads_every_shipped_pool(pid):
    items = pool_items(pid)
    assert len(items) == RECORDS[pid]
    for it in items:
        table = it["tables"][0]
        assert table and it["situation"].task and it["situation"].observation
        assert all(isinstance(a, str) and "(" in a or "[" in a for a in table)  # action names, not tuples
        # Q values are read (not defaulted to the reward): every record has a positive one
        assert max(s.q for s in table.values()) > 0
        assert all(s.visits >= 1 for s in table.values())


def test_wikihow_pool_values_and_keys_match_the_env():
    items = pool_items("wikihow:init")
    first = items[0]
    assert (
        first["situation"].task
        == 'Search an article to learn how to hide gauges.\nThen, access the article "How to Hide Gauges"'
    )
    assert first["situation"].instruction == "" and first["situation"].observation.startswith("<button")
    stats = first["tables"][0]["INPUT(2, hide gauges)"]
    assert (stats.q, stats.visits, stats.last_reward, stats.reason) == (2.0, 1, 1.0, "")  # element HTML dropped
    # the pools' task command lists are those of the env's canonical tasks, line for line
    env = gym.make("rlem_gym/WikiHow-v0", task_set="canonical178")
    tasks = set()
    for t in range(178):
        _, info = env.reset(options={"task_index": t})
        tasks.add("\n".join(info["task_lines"]))
    for pid in ("wikihow:init", "wikihow:init3", "wikihow:annotated"):
        assert all(it["situation"].task in tasks for it in pool_items(pid)), pid


@pytest.mark.parametrize("pid", ["webshop:E0", "webshop:E1", "webshop:E2"])
def test_webshop_pool_in_the_env_formats(pid):
    rich = pool_items(pid, observation_mode="text_rich")
    text = pool_items(pid)
    # the four records of each pool are a search, a results, an item and an item-after-click page
    assert [page_type(it["situation"].observation) for it in rich] == ["search", "results", "item", "item"]
    assert (
        "You have clicked" in rich[3]["situation"].observation
        and "[clicked button]" in rich[3]["situation"].observation
    )
    # in "text" mode the two item pages are one text: one record with both option clicks
    assert [page_type(it["situation"].observation) for it in text] == ["search", "results", "item"]
    assert len(text[2]["tables"][0]) == len(rich[2]["tables"][0]) + len(rich[3]["tables"][0])
    for it in text:
        obs = it["situation"].observation
        assert obs.startswith("WebShop [SEP] Instruction: [SEP] ") and "\n" not in obs
        assert "[Back to Search]" not in obs and "[SEP] [" not in obs
        assert it["situation"].task == obs.split(" [SEP] ")[2]  # the instruction, without "Instruction:"
        assert not it["situation"].task.lower().startswith("instruction")
    assert text[0]["situation"].available_actions == ("search",)
    results_actions = text[1]["situation"].available_actions
    assert results_actions[0] == "back to search" and len(results_actions) >= 3
    assert text[2]["situation"].last_actions == tuple(next(iter(it["tables"][0])) for it in text[:2])
    encouraged = [max(it["tables"][0].items(), key=lambda kv: kv[1].q)[0] for it in text]
    assert (
        encouraged[0].startswith("search[")
        and encouraged[1].startswith("click[b")
        and encouraged[2].startswith("click[")
    )
    assert any(s.reason for it in text for s in it["tables"][0].values())  # the annotators' reasons are kept


def test_site_layout_conversion_matches_the_env_text():
    page = (
        "\nYou have clicked bright citrus.\nInstruction:\ni want deodorant\n[Back to Search]\n[< Prev]\n"
        "scent [assorted][[bright citrus]]\nsize [3 ounce (pack of 1)][2-pack]\nDeodorant Title\nPrice: $10.99\n"
        "Rating: N.A.\n[Description]\n[Features]\n[Reviews]\n[Buy Now]\n"
    )
    assert from_site_layout(page) == (
        "WebShop [SEP] Instruction: [SEP] i want deodorant [SEP] Back to Search [SEP] < Prev [SEP] scent [SEP] "
        "assorted [SEP] bright citrus [SEP] size [SEP] 3 ounce (pack of 1) [SEP] 2-pack [SEP] Deodorant Title [SEP] "
        "Price: $10.99 [SEP] Rating: N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"
    )
    kinds = dict((t, k) for k, t in parse_site_layout(page))
    assert kinds["bright citrus"] == "option_chosen" and kinds["assorted"] == "option" and kinds["Buy Now"] == "button"
    assert parse_site_layout("Instruction:\nx\n[Back to Search]\n[[B078GWRC1J]]\n")[-1] == (
        "link_visited",
        "B078GWRC1J",
    )
    with pytest.raises(ValueError, match="mode"):
        from_site_layout(page, "html")


def test_converted_pages_look_like_real_env_pages():
    """A real env results / item page and a converted pool page split into the same leading parts."""
    env = gym.make("rlem_gym/WebShop-v0", split="test", shown_results=3)
    obs, info = env.reset(options={"task_index": 0})
    obs, *_ = env.step("search[" + info["instruction"][:40] + "]")
    pool_results = pool_items("webshop:E0")[1]["situation"].observation
    assert page_type(obs) == page_type(pool_results) == "results"
    lead = lambda o: [p if i != 2 else "<instruction>" for i, p in enumerate(o.split(" [SEP] ")[:5])]  # noqa: E731
    assert lead(obs)[:4] == lead(pool_results)[:4] == ["WebShop", "Instruction:", "<instruction>", "Back to Search"]
    env.close()


def test_import_pool_into_memory_and_retrieve(minilm):
    from rlem_gym.agents import get_adapter

    matcher = get_adapter("webshop").make_matcher(minilm)
    memory = import_pool("webshop:E0", matcher, capacity=50)
    assert len(memory) == 3
    env = gym.make("rlem_gym/WebShop-v0", split="test", shown_results=3)
    obs, info = env.reset(options={"task_index": 5})
    task, observation, instruction = get_adapter("webshop").memory_key(obs, info)
    hits = memory.retrieve(task, observation, instruction, k=2)
    assert page_type(hits[0].record.key.observation) == "search"  # same page type ranks first
    assert hits[0].record.sorted_actions()[0][0].startswith("search[")
    env.close()
    # double Q: both tables start from the pool and are independent
    dq = import_pool("wikihow:init", get_adapter("wikihow").make_matcher(), double_q=True)
    rec = dq.records()[0]
    a, b = rec.tables
    assert a.keys() == b.keys() and all(a[x].q == b[x].q for x in a)
    first = next(iter(a))
    a[first].q += 1.0
    assert b[first].q != a[first].q


def test_bad_pool_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "pool.yaml"
    bad.write_text("? !!python/tuple\n- only one field\n: {action_dict: {}}\n")
    with pytest.raises(MemoryFormatError, match="3-tuple"):
        pool_items(bad, "webshop")


def test_pool_exemplars_for_the_static_agent():
    from rlem_gym.agents import StaticExemplarAgent
    from rlem_gym.agents.webshop_adapter import STATIC_EXEMPLARS

    exemplars = pool_exemplars("webshop:E0", "webshop")
    assert len(exemplars) == 3 and all(e.record_id is None for e in exemplars)
    assert exemplars[0].encouraged[0].action == "search[3 ounce bottle bright citrus deodorant sensitive skin]"
    assert exemplars[0].discouraged[0].action == "click[search]"
    assert exemplars[0].discouraged[0].reason == "The search button shouldn't be clicked."
    assert exemplars[2].input.last_actions == (exemplars[0].encouraged[0].action, exemplars[1].encouraged[0].action)
    with pytest.raises(ValueError, match="not a webshop one"):
        pool_exemplars("wikihow:init", "webshop")

    class NoLLM:  # the agent only needs an LLM once it acts
        def generate(self, *args, **kwargs):
            raise AssertionError("no LLM call is expected here")

    agent = StaticExemplarAgent(NoLLM(), "webshop:E1", "webshop")
    assert [e.input.task for e in agent.exemplars] == [e.input.task for e in pool_exemplars("webshop:E1", "webshop")]
    assert StaticExemplarAgent(NoLLM(), None, "webshop").exemplars == list(STATIC_EXEMPLARS)
