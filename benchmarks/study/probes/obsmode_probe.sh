#!/usr/bin/env bash
# Dev-goal probe of the WebShop observation mode (WebShop dev goals train[20:26], never test goals):
# the untrained Rememberer (E0) and the static agent (E0's records as exemplars), the study's
# settings otherwise, 8 steps per goal, in `text_rich` (the official launch's mode) and `text`.
# Outputs: docs/study/probes/obsmode-<mode>/ (published from runs/probes/obsmode-<mode>).
set -euo pipefail
cd "$(dirname "$0")/../../.."
set -f
for mode in text_rich text; do
  rlem-gym bench --llm qwen2.5-coder-0.5b:gguf --action-decoding constrained --react-history last \
    --max-steps 8 --k 2 --capacity 500 --action-capacity 20 --epochs 0 --seeds 0 --temperature 0 \
    --max-tokens 128 --random-advice --no-progress --env webshop --agents rememberer@untrained,static \
    --test-split 'train[20:26]' --init-memory webshop:E0 --env-kwargs "{\"observation_mode\": \"$mode\"}" \
    --out "runs/probes/obsmode-$mode"
  python -m rlem_gym.benchmarks.study.publish "runs/probes/obsmode-$mode" "docs/study/probes/obsmode-$mode"
  python -m rlem_gym.benchmarks.study.failures "runs/probes/obsmode-$mode" > "docs/study/probes/obsmode-$mode/failures.md"
done
