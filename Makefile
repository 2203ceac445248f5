# Entry points. The two README commands are `make main` (set up, reproduce the quick profile, build the
# book) and `make test` (set up, run the whole test-suite). Both start from a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
PYTEST_ARGS ?=

.PHONY: main test setup setup-test reproduce book book-only clean-book sanitize help

help:
	@echo "make main   - install everything, reproduce (PROFILE=$(PROFILE)) and build the book"
	@echo "make test   - install everything and run the full test-suite"

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

reproduce: setup
	$(VENV)/bin/fa-lib reproduce --profile $(PROFILE)

book-only:
	rm -rf _build
	$(PY) tools/vendor_widgets.py
	$(PY) -m fa_lib.bookgen --require-executed
	$(VENV)/bin/jupyter-book build . --all --path-output . -W --keep-going

book: book-only

main: setup
	$(VENV)/bin/fa-lib reproduce --profile $(PROFILE)
	$(MAKE) book-only
	@echo "The book is in _build/html/index.html"

test: setup-test
	CI=$${CI:-} $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc

# The binary-conv kernels under AddressSanitizer + UBSan (every ISA), then valgrind (scalar/AVX2).
sanitize:
	mkdir -p build
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fopenmp \
	    fa_lib/kernels/xnor.c fa_lib/kernels/xnor_amx.c fa_lib/kernels/xnor_selftest.c -lm -o build/xnor_selftest_asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ./build/xnor_selftest_asan
	if command -v valgrind >/dev/null; then \
	  $(CC) -O2 -g -fopenmp fa_lib/kernels/xnor.c fa_lib/kernels/xnor_amx.c fa_lib/kernels/xnor_selftest.c -lm -o build/xnor_selftest && \
	  FA_XNOR_SELFTEST_SKIP_AMX=1 valgrind -q --error-exitcode=1 ./build/xnor_selftest; fi

clean-book:
	rm -rf _build book/_executed book/_generated
