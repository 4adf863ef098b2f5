#!/usr/bin/env bash
# Run every benchmark script at tiny sizes, so that they keep working. No timing is
# checked: this fails only when a script fails. Uses the `python` on PATH, which must
# have stageline installed (e.g. PATH="$PWD/.venv/bin:$PATH" bash bench/smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp docs/performance.md "$tmp/performance.md"

step() {
    echo "== $*"
    local start=$SECONDS
    "$@"
    echo "   ($((SECONDS - start)) s)"
}

step python bench/gen_org.py "$tmp/org.git" --agents 5 --files 3 --commits 12
step python bench/hook.py --agents 20 --commits 20 --runs 1
step python bench/promote.py --sizes 5,20 --runs 1
step python bench/clone_promote.py --agents 20 --files 3 --runs 1 --trace
step python bench/history.py --agents 20 --commits 40 --runs 1
step python bench/signing.py --agents 20 --commits 30 --signed 6 --audit 40 --runs 1
step python bench/site.py --agents 20 --files 3 --commits 40 --runs 1
step python bench/run.py --sizes 5,20 --runs 1 --push-commits 20 --commits 40 \
    --history-agents 20 --write-docs --docs "$tmp/performance.md"
grep -q '<!-- bench:run:end -->' "$tmp/performance.md"
echo "bench smoke: all scripts ran"
