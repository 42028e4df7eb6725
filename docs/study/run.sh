#!/usr/bin/env bash
# The learning-effect study: every run of docs/study/README.md, in the order they are run.
#
#   bash docs/study/run.sh [RUN ...]      # default: every run, in order
#
# Each run is an `rlem-gym bench` command with its own run folder under runs/study/<run>; rerunning
# this script resumes every unfinished run (finished episodes are skipped; a run stopped with Ctrl-C or
# `kill` (SIGTERM; a background job ignores SIGINT) or killed outright loses at
# most the episode in flight). When a run finishes, its small outputs are copied to
# docs/study/<run>/ (results, config, per-episode records, plots, gzipped step log, memories);
# `python -m rlem_gym.benchmarks.study.publish runs/study/<run> docs/study/<run>` does the same for a run
# still going. On a fresh clone, a run whose folder is missing is first rebuilt from docs/study/<run>
# (`publish --restore`), so a study spread over several sessions goes on where the last one stopped.
#
# Settings (decided on dev splits, never on test goals; see docs/study/README.md):
#   model qwen2.5-coder-0.5b through llama.cpp (the best zoo model per CPU-second, RESULTS.md),
#   constrained action decoding (valid actions 40-73% free -> 100% constrained on WebShop train[20:23]),
#   ReAct with the bounded history (`last`), the official exemplar order (the most similar exemplar
#   last, next to the new input; the agent's default since 2026-11-30: runs before that showed the
#   most similar first, see docs/study/README.md "Exemplar order"), greedy decoding, 15 steps, k = 2, capacities 500/20,
#   3 training epochs, seed 0, and the official code's invented advice (`--random-advice`: a record
#   with no positive Q shows a random Encouraged action; decided on dev goals train[20:28], see
#   docs/study/README.md "Advice rendering"); WebShop observations in `text` mode (the env's default; the
#   official launch uses `text_rich`, which made the 0.5B model loop more on dev goals train[20:26], see
#   docs/study/README.md "Observation mode").
set -euo pipefail
cd "$(dirname "$0")/../.."
set -f  # no globbing: split specs like train[0:10] are arguments, not patterns

COMMON=(--llm qwen2.5-coder-0.5b:gguf --action-decoding constrained --react-history last
        --max-steps 15 --k 2 --capacity 500 --action-capacity 20 --epochs 3 --seeds 0
        --temperature 0 --max-tokens 128 --random-advice --no-progress)
MAIN_AGENTS="rememberer,rememberer@untrained,static,react,heuristic,oracle"

restore() {  # restore NAME: a run started in an earlier session gets its folder back from its committed outputs
  local name=$1 out="runs/study/$1"
  if [ ! -e "$out/config.json" ] && [ -e "docs/study/$name/config.json" ]; then
    python -m rlem_gym.benchmarks.study.publish --restore "docs/study/$name" "$out"
  fi
}

run() {  # run NAME ARGS...: run (or resume) one study run, then publish its small outputs
  local name=$1; shift
  local out="runs/study/$name"
  restore "$name"
  [ -z "${NEEDS[$name]:-}" ] || restore "${NEEDS[$name]}"  # a run that tests another run's memory
  echo "== $(date -u +%FT%TZ) study run $name -> $out"
  rlem-gym bench "${COMMON[@]}" "$@" --out "$out"
  python -m rlem_gym.benchmarks.study.publish "$out" "docs/study/$name"
  python -m rlem_gym.benchmarks.study.summary docs/study  # summary.md: robustness spread, test-goal learning curve
}

declare -A RUNS NEEDS
NEEDS[webshop-snapshots]=webshop-main
NEEDS[webshop-heldout]=webshop-main
RUNS[webshop-main]="--env webshop --agents $MAIN_AGENTS --train-split train[0:10] --test-split test[0:50] --init-memory webshop:E0"
RUNS[wikihow-main]="--env wikihow --agents $MAIN_AGENTS --train-split train_S0 --test-split microcanon70 --init-memory wikihow:init"
# the learning curve on test goals: the memory snapshots after training epochs 1 and 2 of webshop-main
# (its epoch-3 memory is the trained row), each tested frozen on the same goals
SNAP=runs/study/webshop-main/train/seed0/memory_epoch
RUNS[webshop-snapshots]="--env webshop --agents rememberer[init=${SNAP}01]@untrained,rememberer[init=${SNAP}02]@untrained --epochs 0 --test-split test[0:50] --init-memory webshop:E0"
# the held-out confirmation: the main comparison on test[50:100], goals no setting or decision has
# seen; the trained row is webshop-main's trained memory (after epoch 3), frozen
RUNS[webshop-heldout]="--env webshop --agents rememberer[init=${SNAP}03]@untrained,rememberer@untrained,static,react,heuristic,oracle --epochs 0 --test-split test[50:100] --init-memory webshop:E0 --reference rememberer[init=${SNAP}03]@untrained"
RUNS[webshop-E1]="--env webshop --agents rememberer,rememberer@untrained,static --train-split train[0:10] --test-split test[0:50] --init-memory webshop:E1"
RUNS[webshop-E2]="--env webshop --agents rememberer,rememberer@untrained,static --train-split train[0:10] --test-split test[0:50] --init-memory webshop:E2"
# the S1 runs train on another set; their untrained row (same pool, goals and settings, greedy) would
# repeat the main run's episodes one for one, so the table references the main run's row instead
RUNS[webshop-S1]="--env webshop --agents rememberer --train-split train[10:20] --test-split test[0:50] --init-memory webshop:E0"
# the paper's ablations: no Discouraged advice, one-step Q, no invented (random) advice
RUNS[webshop-ablations]="--env webshop --agents rememberer[discouraged=false],rememberer[n_step=1],rememberer[random_advice=false] --train-split train[0:10] --test-split test[0:50] --init-memory webshop:E0"
# success replay (not in the paper): only the steps of episodes with return > 0, each with Q = 1.0,
# and no Discouraged advice; does Q-learning add anything over keeping the successes?
RUNS[webshop-success-replay]="--env webshop --agents rememberer[discouraged=false,learning=success_replay] --train-split train[0:10] --test-split test[0:50] --init-memory webshop:E0"
RUNS[wikihow-S1]="--env wikihow --agents rememberer --train-split train_S1 --test-split microcanon70 --init-memory wikihow:init"
RUNS[wikihow-annotated]="--env wikihow --agents rememberer@untrained --epochs 0 --test-split microcanon70 --init-memory wikihow:annotated"
# levers toward reading the goal, on dev goals only (train[20:60]; never test), each trained as
# webshop-main was and tested against its trained memory (frozen, the reference row): exploration
# (20% of training steps take a random valid action, so that option clicks get Q values) and
# whole-action scoring (the action slot is the most likely whole valid action, not a token-by-token
# choice: the single-step probe saw 19 of 100 item-page clicks end as `click[back to search]`)
NEEDS[webshop-dev-levers]=webshop-main
RUNS[webshop-dev-levers]="--env webshop --agents rememberer[init=${SNAP}03]@untrained,rememberer[explore=0.2],rememberer[action_decoding=scored],heuristic --train-split train[0:10] --test-split train[20:60] --init-memory webshop:E0 --reference rememberer[init=${SNAP}03]@untrained"
# the 1.5B model, which the single-step probe found reading the goal's option on 53% of dev item pages
# (0.5B: 21%): trained and untrained Rememberer, static and the heuristic on the same dev goals
RUNS[webshop-dev-1.5b]="--env webshop --llm qwen2.5-coder-1.5b:gguf --agents rememberer,rememberer@untrained,static,heuristic --train-split train[0:10] --test-split train[20:60] --init-memory webshop:E0"
# a third-party env: TextWorld games generated locally (the textworld extra), 10 training games and 30
# test games from disjoint seed ranges; no initial pool (the Rememberer starts empty, so its untrained
# row is zero-shot), the static row shows the adapter's two exemplars written over training games
RUNS[textworld-main]="--env textworld --agents rememberer,rememberer@untrained,static,react,random,oracle --train-split train[0:10] --test-split test[0:30]"
# webshop-main before the rest of wikihow-main: its re-run (~8.5 h) settles the provisional WebShop
# verdict, while wikihow-main still has ~28 h to go (its epoch 3 and its test); both resume as they are
ORDER=(webshop-main wikihow-main webshop-snapshots webshop-heldout webshop-E1 webshop-E2 webshop-S1 webshop-ablations webshop-success-replay wikihow-S1 wikihow-annotated textworld-main webshop-dev-levers webshop-dev-1.5b)

main() {
  for name in "$@"; do
    [ -n "${RUNS[$name]:-}" ] || { echo "unknown run $name; runs: ${ORDER[*]}" >&2; exit 2; }
    # shellcheck disable=SC2086  # the run's arguments are word-split on purpose
    run "$name" ${RUNS[$name]}
  done
}
# bash reads a script as it runs it: with the whole loop in a function called on the last line, an
# edit to this file while a run is going does not change (or break) the run
main "${@:-${ORDER[@]}}"; exit $?
