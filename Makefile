# tunneld and dispatcher.  See README.md.

SHELL	:= /bin/bash

PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/bin
MANDIR	?= $(PREFIX)/share/man
DOCDIR	?= $(PREFIX)/share/doc/tunneld
SYSCONFDIR ?= /etc
# systemd reads /usr/local/lib/systemd/system too; Debian 12 packages use
# /lib/systemd/system (debian/rules says so).
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BUILD	?= build
CC	?= cc
CFLAGS	?= -O2 -g
PYTHON	?= /usr/bin/python3
FUZZ_TIME ?= 60
# make test runs every fuzz target this many seconds (0: none).
FUZZ_SHORT ?= 10
FUZZ_BUILD ?= build/fuzz

# The one place the version is written (debian/changelog must agree:
# tests/e2e/test_package.py checks it).
VERSION	:= $(shell cat VERSION)
PKGS	 = libuv openssl jansson libmicrohttpd lua5.4 libseccomp
WARN	 = -std=c11 -D_GNU_SOURCE \
	   -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
# The walls: each part sees only itself and what it may use.  common/ is
# shared by both programs, so it sees no program; tunneld/ and dispatcher/
# see common/ but never each other.  Unit tests and fuzz targets may see
# what they test.  A new top directory sees only itself (its own quoted
# includes).  make check-walls also checks relative includes and symbols.
INC_common	= -Icommon
INC_tunneld	= -Itunneld -Icommon
INC_dispatcher	= -Idispatcher -Icommon
INC_tests	= -Icommon -Itunneld -Idispatcher
INC		= $(INC_$(firstword $(subst /, ,$<)))
DEPCFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEPLIBS	 = -Wl,--as-needed $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Test-only code (tunneld's TUNNELD_TEST_EXECVE hook) is compiled into the
# suite's sanitizer builds only, never into a release build (make
# check-release checks the release binary).
TEST_HOOKS ?= $(if $(findstring -fsanitize=,$(CFLAGS)),1,)
ALLCFLAGS = $(WARN) $(INC) $(DEPCFLAGS) $(CPPFLAGS) $(CFLAGS) \
	    -DTUNNELD_VERSION='"$(VERSION)"' \
	    $(if $(TEST_HOOKS),-DTUNNELD_TEST_HOOKS) -MMD -MP

COMMON_SRC	= $(wildcard common/*.c)
TUNLIB_SRC	= $(filter-out tunneld/main.c,$(wildcard tunneld/*.c))
DISPLIB_SRC	= $(filter-out dispatcher/main.c,$(wildcard dispatcher/*.c))
UNIT_SRC	= $(wildcard tests/unit/test_*.c)
FUZZ_SRC	= $(wildcard tests/fuzz/fuzz_*.c)

COMMON_OBJ	= $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
TUNLIB_OBJ	= $(TUNLIB_SRC:%.c=$(BUILD)/obj/%.o)
DISPLIB_OBJ	= $(DISPLIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN	= $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
PROGS		= $(BUILD)/tunneld $(BUILD)/dispatcher
# Man pages: scdoc sources in man/, roff in $(BUILD)/man.
MAN_SRC		= $(wildcard man/*.scd)
MANS		= $(MAN_SRC:man/%.scd=$(BUILD)/man/%)
# systemd units, with the installed paths filled in.
SDUNIT_SRC	= $(wildcard systemd/*.in)
SDUNITS		= $(SDUNIT_SRC:systemd/%.in=$(BUILD)/systemd/%)

ASAN_FLAGS	= -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
		  -fno-sanitize-recover=undefined

.PHONY: all deps check-walls check-release test unit e2e fuzz fuzz-run bench \
	run run-tunnel install clean man units deb FORCE

# Builds only: the package installer runs from deps, test, run, run-tunnel,
# bench and fuzz, not on every build.
all: $(PROGS) $(MANS) $(SDUNITS)

man: $(MANS)

units: $(SDUNITS)

$(BUILD)/man/%: man/%.scd
	@mkdir -p $(dir $@)
	@echo "  SCDOC   $<"
	@scdoc < $< > $@.tmp && mv $@.tmp $@

# The paths written into the units: remade when PREFIX or the like change.
$(BUILD)/systemd/paths: FORCE
	@mkdir -p $(dir $@)
	@echo '$(BINDIR) $(SYSCONFDIR)' | cmp -s - $@ || \
	    echo '$(BINDIR) $(SYSCONFDIR)' > $@

$(BUILD)/systemd/%: systemd/%.in $(BUILD)/systemd/paths
	@mkdir -p $(dir $@)
	@echo "  GEN     $@"
	@sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    $< > $@

# Installs missing Debian packages (a no-op once everything is there).
deps:
	@scripts/install-deps

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALLCFLAGS) -c $< -o $@

# The console's page (dispatcher/page/) is compiled into the dispatcher:
# console_page.c includes its files with .incbin, which -MMD does not see.
PAGE_FILES	= $(wildcard dispatcher/page/*)
$(BUILD)/obj/dispatcher/console_page.o: $(PAGE_FILES)
$(BUILD)/obj/dispatcher/console_page.o: ALLCFLAGS += \
	-DCONSOLE_PAGE_DIR='"$(CURDIR)/dispatcher/page"'

# What prints the version is rebuilt when it changes.
$(BUILD)/obj/tunneld/cli_usage.o $(BUILD)/obj/dispatcher/cmdline.o \
$(BUILD)/obj/dispatcher/console.o $(BUILD)/obj/dispatcher/console_api.o \
$(BUILD)/obj/dispatcher/console_metrics.o: VERSION

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/libtun.a: $(TUNLIB_OBJ)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/libdisp.a: $(DISPLIB_OBJ)
	@rm -f $@ && ar rcs $@ $^

# Each program links its own part and common/; tests link everything.
LIBS = $(BUILD)/libdisp.a $(BUILD)/libtun.a $(BUILD)/libcommon.a

$(BUILD)/tunneld: $(BUILD)/obj/tunneld/main.o $(BUILD)/libtun.a $(BUILD)/libcommon.a
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DEPLIBS)

$(BUILD)/dispatcher: $(BUILD)/obj/dispatcher/main.o $(BUILD)/libdisp.a \
		$(BUILD)/libcommon.a
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DEPLIBS) -lpthread

$(BUILD)/tests/%: tests/unit/%.c $(LIBS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(ALLCFLAGS) -o $@ $(filter %.c %.a,$^) $(DEPLIBS) \
	    $(shell pkg-config --libs cmocka)

# Fails when a part includes a header or uses a symbol across a wall (see
# INC_* above and scripts/check-walls).  The objects are checked before the
# programs are linked, so that a crossing is named rather than reported as
# an undefined reference.
check-walls: $(LIBS) $(BUILD)/obj/tunneld/main.o $(BUILD)/obj/dispatcher/main.o
	scripts/check-walls --objects $(BUILD)
	$(MAKE) $(PROGS)
	scripts/check-walls $(BUILD)

# A release build holds no test hook (TEST_HOOKS above): fails if the
# tunneld of make's default build names one.
check-release:
	$(MAKE) $(BUILD)/tunneld
	@if grep -q TUNNELD_TEST_ $(BUILD)/tunneld; then \
	    echo "check-release: $(BUILD)/tunneld holds a test hook"; exit 1; \
	else echo "check-release: $(BUILD)/tunneld holds no test hook"; fi

# The suite runs against binaries built with AddressSanitizer and UBSan,
# and every libFuzzer target runs FUZZ_SHORT seconds.
test: deps
	$(MAKE) check-release
	$(MAKE) BUILD=build/asan CFLAGS="$(ASAN_FLAGS)" check-walls unit e2e
	[ "$(FUZZ_SHORT)" = 0 ] || $(MAKE) fuzz FUZZ_TIME=$(FUZZ_SHORT)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# ARTIFACTS: where tests leave what a person looks at (the console page's
# screenshots).
e2e: $(PROGS) $(BUILD)/tests/lws-peer $(BUILD)/tests/delayrelay
	cd tests/e2e && TUNNELD=$(abspath $(BUILD)/tunneld) \
	    ARTIFACTS=$(abspath $(BUILD))/artifacts \
	    LWS_PEER=$(abspath $(BUILD)/tests/lws-peer) \
	    DELAY_RELAY=$(abspath $(BUILD)/tests/delayrelay) \
	    $(PYTHON) -m pytest -q -x -p no:cacheprovider .

$(BUILD)/tests/lws-peer: tests/e2e/lws-peer.c
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(WARN) $(CFLAGS) -o $@ $< \
	    $(shell pkg-config --cflags --libs libwebsockets)

# The delaying relay for long-link tests and benchmarks (no netem here).
$(BUILD)/tests/delayrelay: tests/delayrelay.c
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(WARN) $(CFLAGS) -o $@ $<

# Each libFuzzer target runs FUZZ_TIME seconds from its seed corpus and
# what earlier runs in FUZZ_BUILD found; a crash or leak in one target does
# not stop the others, but fails the run (the input is left in FUZZ_BUILD
# as <target>-crash-*).
fuzz: deps
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang \
	    CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" fuzz-run

FUZZ_BIN = $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIBS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(ALLCFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.a,$^) \
	    $(DEPLIBS)

fuzz-run: $(FUZZ_BIN)
	@failed=; for f in $(FUZZ_BIN); do \
	    n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
	    seeds=tests/fuzz/corpus/$$n; [ -d $$seeds ] || seeds=; \
	    echo "== $$n ($(FUZZ_TIME) s, log in $(BUILD)/$$n.log)"; \
	    if $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/$$n- $(BUILD)/corpus/$$n $$seeds \
	        >$(BUILD)/$$n.log 2>&1; then tail -n 12 $(BUILD)/$$n.log; \
	    else tail -n 60 $(BUILD)/$$n.log; failed="$$failed $$n"; fi; \
	    done; \
	    if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed"; exit 1; fi

bench: deps
	$(MAKE) all $(BUILD)/tests/delayrelay
	bench/run

run: deps
	$(MAKE) all
	scripts/run-dispatcher

# A plain wsserver + wsclient pair forwarding to an echo service.
run-tunnel: deps
	$(MAKE) all
	scripts/run-tunnel

# Binaries, man pages, systemd units, the documentation and the example
# policies; the configuration under SYSCONFDIR/tunneld only where it is
# missing (an operator's files are never overwritten).
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)/examples/multitenant \
	    $(DESTDIR)$(SYSCONFDIR)/tunneld
	install -m 755 $(PROGS) $(DESTDIR)$(BINDIR)
	install -m 644 $(filter %.1,$(MANS)) $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(filter %.5,$(MANS)) $(DESTDIR)$(MANDIR)/man5
	install -m 644 $(filter %.8,$(MANS)) $(DESTDIR)$(MANDIR)/man8
	install -m 644 $(SDUNITS) $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 644 docs/*.md $(DESTDIR)$(DOCDIR)
	install -m 644 lua/multitenant/*.lua \
	    $(DESTDIR)$(DOCDIR)/examples/multitenant
	install -m 644 systemd/example.conf $(DESTDIR)$(DOCDIR)/examples
	@# handler.lua will hold the tenants' passwords: not world-readable.
	@for f in lua/handler.lua:640 lua/canAccept.lua:644 \
	    systemd/dispatcher.conf:644; do \
	    t=$(DESTDIR)$(SYSCONFDIR)/tunneld/$$(basename $${f%:*}); \
	    if [ -e $$t ]; then echo "  KEEP    $$t"; else echo "  INSTALL $$t"; \
	    install -m $${f#*:} $${f%:*} $$t; fi; done

# The Debian package (debian/), built with dpkg-buildpackage from a copy of
# the tree in build/deb/src, so that its clean step never touches build/
# (the test suite's binaries live there); the .deb is left in build/deb.
DEB_DIR	= build/deb
deb:
	rm -rf $(DEB_DIR)/src && mkdir -p $(DEB_DIR)/src
	tar -cf - --exclude=./build --exclude=./.git --exclude='__pycache__' . | \
	    tar -C $(DEB_DIR)/src -xf -
	@# Not the variables of a make that runs this one (make test's
	@# BUILD and sanitizer CFLAGS travel in MAKEFLAGS).
	cd $(DEB_DIR)/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	    -u CFLAGS -u LDFLAGS -u CPPFLAGS \
	    DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" \
	    dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/*.deb

clean:
	rm -rf build

FORCE:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
