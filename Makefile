# SPDX-License-Identifier: MIT
# The front door: `make demo` runs ferry end to end, `make check` runs every test.
# The build itself is meson + ninja; this file only strings the steps together.
BUILD      ?= build
ASAN_BUILD ?= build-asan
DEB_DIR    ?= build-deb
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
# The unit tests are make check's; DEB_BUILD_OPTIONS= runs them in the package build too.
DEB_BUILD_OPTIONS ?= nocheck
PREFIX     ?= /usr/local
PYTHON     ?= /usr/bin/python3
APPLIANCE  := $(BUILD)/guest
PYTEST_ARGS ?=
# e2e test files run in this many pytest-xdist workers, a file's tests in one worker (they share
# its module-scoped lab): the tests mostly wait on guests, leases and timeouts (one worker used
# about a quarter of one CPU), so two cut the wall time on two cores. E2E_JOBS=0 runs them all
# one after another.
E2E_JOBS ?= 2

.PHONY: all deps build appliance check unit asan e2e demo install clean deb promtool fuzz \
	check-systemd

all: build

deps:
	@bash scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix $(PREFIX)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)
	ninja -C $(BUILD) guest/vmlinuz

appliance: $(BUILD)/build.ninja
	ninja -C $(BUILD) guest/vmlinuz

unit: build
	FERRY_NO_SKIP=1 meson test -C $(BUILD) --suite unit --print-errorlogs

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Dguest=false -Dman=disabled

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 FERRY_NO_SKIP=1 \
	  meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs

E2E_ENV = FERRY_BUILD=$(abspath $(BUILD)) FERRY_GUEST_DIR=$(abspath $(APPLIANCE)) FERRY_NO_SKIP=1
E2E_PYTEST = $(PYTHON) -m pytest -v -p no:cacheprovider --durations=25

# With workers, two phases: every file but the `timing` ones (they hold client-observed gaps to
# the 300 ms budget, which another worker's guests would eat into) E2E_JOBS at a time, while
# the real Debian guest of tests/e2e/test_real_guest.py and its ferry-host variant (for
# check-systemd) are built (or found cached) in the background; then the timing files one after
# another, alone (also when the first phase failed, so that one run shows every failure). Exit
# status 5 (nothing collected, PYTEST_ARGS narrowed a phase to nothing) is not a failure.
e2e: build
	bash scripts/install-deps guest
ifeq ($(E2E_JOBS),0)
	$(E2E_ENV) $(E2E_PYTEST) tests/e2e $(PYTEST_ARGS)
else
	{ scripts/make-debian-guest --probe-responder $(APPLIANCE)/probe-responder && \
	  scripts/make-debian-guest --probe-responder $(APPLIANCE)/probe-responder \
	    --variant ferry-host; } >$(BUILD)/real-guest-build.log 2>&1 & guest=$$!; \
	$(E2E_ENV) $(E2E_PYTEST) -n $(E2E_JOBS) --dist loadfile -m "not timing" tests/e2e \
	  $(PYTEST_ARGS); rc1=$$?; \
	wait $$guest || echo "make-debian-guest failed (see $(BUILD)/real-guest-build.log)"; \
	$(E2E_ENV) $(E2E_PYTEST) -m timing tests/e2e $(PYTEST_ARGS); rc2=$$?; \
	{ [ $$rc1 = 0 ] || [ $$rc1 = 5 ]; } && { [ $$rc2 = 0 ] || [ $$rc2 = 5 ]; }
endif

check: unit promtool asan e2e deb check-systemd

demo: build
	FERRY_BUILD=$(abspath $(BUILD)) FERRY_GUEST_DIR=$(abspath $(APPLIANCE)) bash scripts/demo

install: build
	meson install -C $(BUILD)
	install -d $(DESTDIR)$(PREFIX)/share/ferry/guest
	install -m 0644 $(APPLIANCE)/vmlinuz $(APPLIANCE)/initrd.img $(DESTDIR)$(PREFIX)/share/ferry/guest/
	install -d $(DESTDIR)$(PREFIX)/share/ferry/lab
	install -m 0755 lab/ferry-lab $(DESTDIR)$(PREFIX)/share/ferry/lab/
	install -m 0644 lab/ferrylab.py $(DESTDIR)$(PREFIX)/share/ferry/lab/

# The alerting rules shipped in contrib/prometheus, checked and unit-tested by promtool.
promtool: deps
	promtool check rules contrib/prometheus/ferry.rules.yml
	cd tests/prometheus && promtool test rules ferry.rules.test.yml

# The Debian package (debian/), built from a copy of this tree (tracked and new files) so that
# dpkg-buildpackage leaves its .deb, .changes and .buildinfo in $(DEB_DIR), not next to the tree;
# then lintian and tests/pkg check it.
deb: deps
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/ferry
	git ls-files -z --cached --others --exclude-standard | \
	  tar --null -T - --ignore-failed-read -cf - | tar -xf - -C $(DEB_DIR)/ferry
	cd $(DEB_DIR)/ferry && DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning $(DEB_DIR)/*.changes
	FERRY_DEB_DIR=$(abspath $(DEB_DIR)) $(PYTHON) -m pytest -v -p no:cacheprovider tests/pkg

# The package under a running systemd (tests/systemd): make deb's .deb installed offline in a
# real Debian 12 guest (scripts/make-debian-guest --variant ferry-host: with the package's
# dependencies; built or found cached) booted in QEMU, then ferryd.service enabled, killed,
# hung, restarted with a VM running, and the package purged, checked over SSH.
check-systemd: build deb
	bash scripts/install-deps guest
	FERRY_DEB_DIR=$(abspath $(DEB_DIR)) $(E2E_ENV) $(PYTHON) -m pytest -v -s -p no:cacheprovider \
	  --durations=0 tests/systemd

# Every libFuzzer target in fuzz/ for FUZZ_SECONDS each (clang, ASan+UBSan), starting from the
# committed corpus; new interesting inputs go to $(FUZZ_BUILD)/corpus/NAME, crashes to
# $(FUZZ_BUILD)/crash/NAME/ (fuzz/README.md says what to do with them). The committed corpus
# is replayed by make check (the unit suite's fuzz_* tests) without clang.
$(FUZZ_BUILD)/build.ninja:
	@bash scripts/install-deps fuzz
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzzing=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Dguest=false -Dman=disabled

fuzz: $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	@set -e; for t in $$(ls fuzz/corpus); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crash/$$t; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(FUZZ_BUILD)/fuzz/fuzz_$$t \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=70000 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crash/$$t/ $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t \
	    2>&1 | grep -E '^#[0-9]+.*DONE|^stat::number_of_executed_units|ERROR|SUMMARY|property failed'; \
	done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(DEB_DIR) $(FUZZ_BUILD)

.PHONY: bench-election
bench-election: build
	$(PYTHON) bench/election --idle-minutes 10

.PHONY: bench-migration
bench-migration: build
	$(PYTHON) bench/migration

.PHONY: bench-storage
bench-storage: build
	$(PYTHON) bench/storage

.PHONY: bench-failover
bench-failover: build
	$(PYTHON) bench/failover

.PHONY: bench-chaos
bench-chaos: build
	$(PYTHON) bench/chaos

.PHONY: bench-soak
bench-soak: build
	$(PYTHON) bench/migration-soak

.PHONY: bench-scale
bench-scale: build
	$(PYTHON) bench/scale

.PHONY: bench-import
bench-import: build
	$(PYTHON) bench/import

.PHONY: bench-efi
bench-efi: build
	$(PYTHON) bench/efi

# The real Debian 12 guest of the VMware imports (scripts/make-debian-guest, cached in
# /var/cache/ferry/guests): built, checked as VMware ships it, booted from its own disk.
.PHONY: guest-image bench-real-guest
guest-image: build
	@bash scripts/install-deps guest
	scripts/make-debian-guest --probe-responder $(BUILD)/guest/probe-responder

bench-real-guest: guest-image
	$(PYTHON) bench/real-guest
