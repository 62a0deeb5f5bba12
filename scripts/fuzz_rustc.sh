#!/bin/sh
# RUSTC_WORKSPACE_WRAPPER of `make fuzz-smoke`: the flags `cargo fuzz -s none`
# gives every crate, given here to this workspace's crates only (protfam and the
# fuzz targets), so the release build of every dependency is reused as it is.
# Build scripts stay uninstrumented: they run without libFuzzer.
rustc="$1"
shift
case " $* " in
  *" --crate-name build_script_build "*) exec "$rustc" "$@" ;;
esac
exec "$rustc" "$@" --cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares
