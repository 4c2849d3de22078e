#!/usr/bin/env bash
# Regenerates docs/errors.md from the bad-input corpus test (tests/e2e/bad_input.rs): every
# case with the error line a user sees.
#   scripts/error-table.sh            rewrites docs/errors.md
#   scripts/error-table.sh -          prints the table instead
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
case "${1:-}" in
  ""|-) ;;
  -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "error-table.sh: unknown argument $1 (none rewrites docs/errors.md, - prints the table)" >&2; exit 2 ;;
esac
scripts/setup.sh --reference >&2
table="$(mktemp)"; page="$(mktemp)"; trap 'rm -f "$table" "$page"' EXIT
SENTENCE_MTL_REQUIRE_ALL=1 SENTENCE_MTL_ERROR_TABLE="$table" \
  cargo test --release --locked --test e2e bad_input >&2
# A filter that matched no test leaves the table empty, which would leave a page of no cases.
[ -s "$table" ] || { echo "error-table.sh: the bad-input test wrote no table" >&2; exit 1; }
if [ "${1:-}" = - ]; then
  cat "$table"
  exit 0
fi
{
  cat <<'HEAD'
# What happens when things go wrong

Every case below is a test (`tests/e2e/bad_input.rs`); the message is what the test saw, with
its temporary folder shown as `<dir>`. Each gives one `error:` line, exit code 1, and no panic
or backtrace. `scripts/error-table.sh` regenerates this page.

HEAD
  cat "$table"
  cat <<'TAIL'

Beyond single messages: a run interrupted by Ctrl-C or SIGTERM saves and exits with 130/143
and the resume command; `kill -9` at any moment (tested mid-write) leaves the previous checkpoint
loadable; a loss that becomes NaN or infinite stops the run naming the task and step and points
at the last good checkpoint. A property test feeds arbitrary bytes to the CSV reader and
arbitrary Unicode to the tokeniser: no panic, ids within the vocabulary, lengths within
`--max-length`.
TAIL
} > "$page"
# mktemp's file is private (0600); the page keeps the usual mode of a repository file.
chmod 644 "$page"
mv "$page" docs/errors.md
echo "wrote docs/errors.md" >&2
