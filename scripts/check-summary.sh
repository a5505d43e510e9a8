#!/bin/sh
# check-summary.sh DIR: the outcome of make check's lanes, from their logs
# (DIR/LANE.log): a line per lane, then the total as the last line,
# "N passed, N failed". A lane counts its unit tests ("test_x: N passed,
# M failed") and its pytest summaries ("N passed, M failed, K errors, ...
# in T s"); a lane that ended without any summary counts as one failure.
set -eu
total_p=0 total_f=0
for log in "$1"/*.log; do
	lane=$(basename "$log" .log)
	# shellcheck disable=SC2046  # three numbers
	set -- $(awk '
		/^test_[a-z_]+: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4; seen = 1 }
		/^(=+ )?[0-9]+ (passed|failed|error)/ && / in [0-9.]+s/ {
			for (i = 1; i < NF; i++) {
				w = $(i + 1); sub(/[,=]+$/, "", w)
				if (w == "passed") p += $i
				if (w == "failed" || w == "error" || w == "errors") f += $i
			}
			seen = 1
		}
		END { print p + 0, f + 0, seen + 0 }' "$log")
	[ "$3" = 1 ] || set -- "$1" $(($2 + 1)) 1
	echo "check: $lane: $1 passed, $2 failed"
	total_p=$((total_p + $1)) total_f=$((total_f + $2))
done
echo "$total_p passed, $total_f failed"
