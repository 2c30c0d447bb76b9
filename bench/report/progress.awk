# SPDX-License-Identifier: Apache-2.0
# bench/report/progress.awk -- the console progress of bench/run_all: the
# result line of every benchmark as Google Benchmark prints it, prefixed with
# the time since run_all started (t0, epoch seconds); skips are collapsed
# (the first two of a program are shown, the rest counted), errors and the
# programs' own notes are shown as they come.
function stamp(   now, e) {
  "date +%s" | getline now
  close("date +%s")
  e = now - t0
  return sprintf("[%02d:%02d]", int(e / 60), e % 60)
}
/ERROR OCCURRED: 'skipped: / {
  if (++nskip <= 2) { print "    " stamp() " " $0; fflush() }
  next
}
# with repetitions Google Benchmark prints mean, median, stddev and cv: keep the median
/^(machine_|memcpy|[a-z0-9_]+__)[^ ]*_(mean|stddev|cv) / { next }
/^(machine_|memcpy|[a-z0-9_]+__)/ || /ERROR|error|^bench_|^oneDNN/ {
  print "    " stamp() " " $0
  fflush()
}
END {
  if (nskip > 2) { printf "    ... and %d more skipped (reasons in the report)\n", nskip - 2; fflush() }
}
