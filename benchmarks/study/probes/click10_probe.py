"""What `CLICK(10)` does on the first results screen of each `microcanon70` task (wikihow-main).

The trained Rememberer of `wikihow-main` copied `CLICK(10)` (record 14, learned on
`become a hooters girl`) on the first results screen. This replays, in the env, a search for
each test task's article title followed by `CLICK(10)`, and prints element 10's text and
whether the tap opened the target article (the task's second sub-goal).

    python -m rlem_gym.benchmarks.study.probes.click10_probe > docs/study/probes/click10_probe.txt
"""

import re

import gymnasium as gym

import rlem_gym  # noqa: F401  (registers the env ids)


def element_text(screen: str, element_id: int) -> str:
    match = re.search(rf'<[^>]* id="{element_id}"[^>]*>([^<]*)<', screen)
    return match.group(1) if match else "(no element)"


def main() -> None:
    env = gym.make("rlem_gym/WikiHow-v0", task_set="microcanon70").unwrapped
    opened = 0
    for index in range(env.num_tasks):
        env.reset(seed=0, options={"task_index": index})
        title = env.tasks[index].title_lower
        screen, *_ = env.step(f"INPUT(2, {title})")
        element = element_text(screen, 10)
        _, _, _, _, after = env.step("CLICK(10)")
        ok = after["subgoals_done"] >= 2
        opened += ok
        print(
            f"{index:2d} {title[:45]:45s} element 10: {element[:40]!r:42s} "
            f"-> {after['page']}{' (target opened)' if ok else ''}"
        )
    print(f"CLICK(10) after searching the title opened the target on {opened} of {env.num_tasks} tasks")


if __name__ == "__main__":
    main()
