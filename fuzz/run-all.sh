#!/bin/sh
# Runs every fuzz target for SECS seconds (default 120), one after another,
# on one core. New inputs go to corpus-run/<target> (not committed); the
# committed seeds in corpus/<target> are read too; dicts/<target>.dict is
# passed when present. Logs: logs/<target>.log.
# Needs: cargo install cargo-fuzz; a nightly toolchain (or RUSTC_BOOTSTRAP=1).
set -u
cd "$(dirname "$0")"
SECS=${1:-120}
shift 2>/dev/null || true
TARGETS=${*:-"header_parse body_validate marshal_reader match_rule sasl config service_file exec_split"}
mkdir -p logs
for t in $TARGETS; do
    mkdir -p "corpus-run/$t"
    dict=""
    [ -f "dicts/$t.dict" ] && dict="-dict=dicts/$t.dict"
    echo "== $t (${SECS}s) $dict"
    cargo +nightly fuzz run -O "$t" "corpus-run/$t" "corpus/$t" -- $dict \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"logs/$t.log" 2>&1
    echo "   exit $?; $(grep -E '^(stat::number_of_executed_units|Done)' "logs/$t.log" | tr '\n' ' ')"
    grep -E '^#[0-9]+.*(DONE|pulse)' "logs/$t.log" | tail -1
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "logs/$t.log" | head -5
done
