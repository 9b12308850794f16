# streamtelecom: build, test, demo.
#   make            build the module for Lua 5.4 (build/lua5.4/streamtelecom.so)
#   make demo       send an SMS, read its status and the balance (fake gateway)
#   make test       the whole spec suite against the fake gateway
#   make asan       the specs on an ASan+UBSan build
#   make valgrind   the specs under valgrind memcheck
#   make install    copy the module to $(DESTDIR)$(LUA_CMOD)
#   make dist       dist/streamtelecom-VERSION.tar.gz and the installable .src.rock
#   make lint       luacheck over every Lua file
#   make deps       install the Debian packages of every target (deps-TARGET: one)
# LUA_VERSION=5.1|5.2|5.3|5.4|jit picks the Lua; LUA_INCDIR, CFLAGS, LDFLAGS,
# PREFIX and DESTDIR can be overridden.

LUA_VERSION ?= 5.4
ifeq ($(LUA_VERSION),jit)
LUA ?= luajit
LUA_PC ?= luajit
LUA_ABI := 5.1
else
LUA ?= lua$(LUA_VERSION)
LUA_PC ?= lua$(LUA_VERSION)
LUA_ABI := $(LUA_VERSION)
endif

PREFIX ?= /usr/local
LUA_CMOD ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_LMOD ?= $(PREFIX)/share/lua/$(LUA_ABI)
PKG_CONFIG ?= pkg-config

ifdef LUA_INCDIR
LUA_CFLAGS := -I$(LUA_INCDIR)
else
LUA_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null)
endif
ifdef CURL_INCDIR
CURL_CFLAGS := -I$(CURL_INCDIR)
else
CURL_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
endif
CURL_LIBS := $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)

CC ?= cc
CFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers
ALL_CFLAGS := -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
              $(WARNINGS) $(CFLAGS) $(LUA_CFLAGS) $(CURL_CFLAGS)
# No -llua: the host program (lua, luajit, nginx) provides the Lua symbols.
ALL_LDFLAGS := -shared $(LDFLAGS)
LIBS := $(CURL_LIBS) -lpthread -ldl -lm

# Every .c in src/: the bindings are src/lua_*.c, the rest is the core.
# check_curl_headers.c sorts first, so that a missing curl/curl.h is told in
# one sentence before any other file fails on it. The rockspec lists the same
# files (spec/packaging_spec.lua checks it).
SRC := $(sort $(wildcard src/*.c))
HEADERS := $(wildcard src/*.h)

BUILD ?= build/lua$(LUA_VERSION)
SO := $(BUILD)/streamtelecom.so
OBJ := $(patsubst src/%.c,$(BUILD)/%.o,$(SRC))

BUSTED := /usr/bin/busted
SPEC_ENV = LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" STREAMTELECOM_LUA="$(LUA)"

.PHONY: all test test-all demo asan valgrind install clean deps \
        fakegw rock bench bench-openresty docs fuzz dist dist-check lint

all: $(SO) $(BUILD)/streamtelecom

$(BUILD)/%.o: src/%.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(SO): $(OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJ) $(LIBS)

# Debian packages, one list per target and only here: each target checks
# its own list first (and installs what is missing when run as root);
# `make deps` installs every list, `make deps-TARGET` the list of one.
ifeq ($(LUA_VERSION),jit)
LUA_DEBS := luajit2 libluajit2-5.1-dev
else ifeq ($(LUA_VERSION),5.1)
LUA_DEBS := lua5.1 liblua5.1-0-dev
else
LUA_DEBS := lua$(LUA_VERSION) liblua$(LUA_VERSION)-dev
endif
# The fake gateway: nginx with its Lua module, lua-cjson inside it, openssl
# for its certificate, curl to see it answer.
FAKEGW_DEBS := nginx libnginx-mod-http-lua lua-cjson openssl curl
DEBS_all := gcc make pkg-config libcurl4-openssl-dev $(LUA_DEBS)
# The command line's campaign commands: argparse and lua-cjson.
CLI_DEBS := lua-argparse lua-cjson
DEBS_demo := $(DEBS_all) $(FAKEGW_DEBS) $(CLI_DEBS)
# The OpenResty spec builds for LuaJIT; the LuaRocks spec builds the rockspec;
# the HAProxy spec builds for Lua 5.3 (HAProxy's Lua) and runs Debian's haproxy.
DEBS_test := $(DEBS_demo) lua-busted lua-socket libluajit2-5.1-dev luarocks strace \
             haproxy lua5.3 liblua5.3-dev
DEBS_asan := $(DEBS_test)
DEBS_valgrind := $(DEBS_test) valgrind
DEBS_test-all := $(DEBS_test) lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev \
                 lua5.3 liblua5.3-dev luajit2 libluajit2-5.1-dev
DEBS_rock := $(DEBS_demo) luarocks
# argparse and lua-cjson come from Debian (CLI_DEBS), not from luarocks:
# scripts/luarocks-debian.lua tells luarocks they are there.
DEBS_dist := git luarocks zip
DEBS_dist-check := $(DEBS_all) $(FAKEGW_DEBS) $(CLI_DEBS) git luarocks zip unzip lua5.4 liblua5.4-dev \
                   lua5.1 liblua5.1-0-dev luajit2 libluajit2-5.1-dev
DEBS_bench := $(DEBS_test) lua-sec valgrind time
DEBS_bench-openresty := $(DEBS_test) luajit2
DEBS_docs := lua-ldoc lua-markdown lua5.1
DEBS_lint := lua-check
DEBS_fuzz := clang libclang-rt-14-dev
DEB_TARGETS := all demo test asan valgrind test-all rock dist dist-check bench \
               bench-openresty docs lint fuzz

deps:
	@scripts/deps --target deps $(sort $(foreach t,$(DEB_TARGETS),$(DEBS_$(t))))

deps-%:
	@scripts/deps --target $* $(DEBS_$*)

# Checks (as root: installs) the packages of one target before it runs.
check-deps-%:
	@scripts/deps --check --target $* $(DEBS_$*)

# The command from a checkout, bound to the Lua and the module just built:
# bin/streamtelecom alone runs `lua`, which may be another version.
$(BUILD)/streamtelecom: bin/streamtelecom $(SO)
	@printf '%s\n' '#!/bin/sh' \
	  '# Made by make: bin/streamtelecom with the module of this build.' \
	  'exec $(LUA) -e "package.cpath = [[$(CURDIR)/$(BUILD)/?.so;]] .. package.cpath" \
	  "$(CURDIR)/bin/streamtelecom" "$$@"' >$@
	@chmod 0755 $@

test: check-deps-test all
	$(SPEC_ENV) $(LUA) $(BUSTED)

# The suite on every Lua Debian has: each built warning-free (-Werror) and
# tested in turn, then one summary line over all of them.
LUA_VERSIONS := 5.4 5.3 5.2 5.1 jit
test-all: check-deps-test-all
	@mkdir -p build; passed=0; failed=0; \
	for v in $(LUA_VERSIONS); do \
	  echo "== Lua $$v"; \
	  $(MAKE) -s LUA_VERSION=$$v CFLAGS="$(CFLAGS) -Werror" test \
	    >build/test-$$v.log 2>&1; \
	  line=$$(grep -E '^[0-9]+ passed, [0-9]+ failed' build/test-$$v.log | tail -1); \
	  if [ -z "$$line" ]; then tail -n 30 build/test-$$v.log; line="0 passed, 1 failed"; fi; \
	  echo "   $$line"; \
	  case "$$line" in *" 0 failed"*) ;; \
	    *) sed -n '/^\(Failure\|Error\) → /,$$p' build/test-$$v.log | head -n 60;; esac; \
	  passed=$$((passed + $$(echo "$$line" | cut -d' ' -f1))); \
	  failed=$$((failed + $$(echo "$$line" | cut -d' ' -f3))); \
	done; \
	echo "$$passed passed, $$failed failed"; [ $$failed -eq 0 ]

demo: check-deps-demo all
	@$(SPEC_ENV) scripts/demo

fakegw:
	fakegw/fakegw run

# Requests per second a single nginx worker serves while sends are in flight,
# blocking vs worker threads vs resty.streamtelecom (examples/openresty/README.md).
bench-openresty: check-deps-bench-openresty
	$(LUA) bench/openresty_modes.lua --latency 0.3
	$(LUA) bench/resty.lua

# Performance figures as ratios measured in one run, instructions a request
# by callgrind, send_many's memory and timing against the fake gateway, each
# beside its goal (never a failure); writes bench/results.md; then bench/campaign.lua (a campaign beside send_many)
# adds its rows. About 9 minutes.
bench: check-deps-bench $(SO)
	@mkdir -p build/bench
	$(CC) -O2 -shared -fPIC $(LUA_CFLAGS) -o build/bench/heap.so bench/heap.c
	$(SPEC_ENV) $(LUA) bench/run.lua
	$(SPEC_ENV) BENCH_APPEND=1 $(LUA) bench/campaign.lua

ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined
asan: check-deps-asan
	$(MAKE) BUILD=build/asan-lua$(LUA_VERSION) CFLAGS="$(ASAN_FLAGS)" \
	        LDFLAGS="-fsanitize=address,undefined" all
	LUA_CPATH="$(CURDIR)/build/asan-lua$(LUA_VERSION)/?.so;;" \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=97 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/spec/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	STREAMTELECOM_LUA="$(LUA)" $(LUA) $(BUSTED)

valgrind: check-deps-valgrind all
	$(SPEC_ENV) valgrind --quiet --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  --error-exitcode=99 --suppressions=$(CURDIR)/spec/valgrind.supp \
	  $(LUA) $(BUSTED)

# Builds the rockspec with Debian's luarocks into a throwaway tree and runs
# the balance example from that tree against the fake gateway.
ROCK_TREE := build/rock-tree
rock: check-deps-rock
	rm -rf $(ROCK_TREE)
	LUAROCKS_CONFIG=scripts/luarocks-debian.lua \
	  luarocks --lua-version $(LUA_ABI) --tree $(ROCK_TREE) make \
	  streamtelecom-*.rockspec >build/rock.log 2>&1 || { cat build/rock.log; exit 1; }
	@LUA_CPATH="$(CURDIR)/$(ROCK_TREE)/lib/lua/$(LUA_ABI)/?.so;;" \
	  STREAMTELECOM_LUA=$(LUA) scripts/demo

# A release from the checkout, offline: the source archive of HEAD (git
# archive: committed files only) and the source rock that `luarocks install`
# builds anywhere: the rockspec beside that archive, its source.url naming it.
VERSION := $(shell sed -n 's/^version = "\(.*\)-[0-9]*"$$/\1/p' streamtelecom-*.rockspec)
ROCKSPEC := streamtelecom-$(VERSION)-1.rockspec
DIST_NAME := streamtelecom-$(VERSION)
SRC_ROCK := dist/$(ROCKSPEC:.rockspec=.src.rock)
dist: check-deps-dist
	@git diff --quiet HEAD -- || echo "dist: uncommitted changes are not in the archive" >&2
	rm -rf dist build/dist && mkdir -p dist build/dist
	git archive --format=tar.gz --prefix=$(DIST_NAME)/ -o dist/$(DIST_NAME).tar.gz HEAD
	cp $(ROCKSPEC) build/dist/ && cp dist/$(DIST_NAME).tar.gz build/dist/
	cd build/dist && zip -q -j $(CURDIR)/$(SRC_ROCK) $(ROCKSPEC) $(DIST_NAME).tar.gz
	@echo "$(SRC_ROCK): install it for the Lua you use (Debian's luarocks builds for"
	@echo "Lua 5.1 unless told otherwise; add --local for ~/.luarocks):"
	@echo "  luarocks --lua-version 5.4 install $(SRC_ROCK)"
	@echo "  luarocks --lua-version 5.3 install $(SRC_ROCK)    # HAProxy 2.6's Lua"
	@echo "  LUAROCKS_CONFIG=scripts/luarocks-luajit.lua luarocks --lua-version 5.1 install $(SRC_ROCK)    # LuaJIT: nginx, OpenResty"

# make dist, then the source rock installed into fresh trees for Lua 5.4,
# 5.1 and LuaJIT, each running the balance example and the installed command
# against the fake gateway (CI runs this).
dist-check: dist check-deps-dist-check
	scripts/dist-check $(SRC_ROCK)

# luacheck (Debian: lua-check) over every Lua file; .luacheckrc says how.
lint: check-deps-lint
	luacheck -q .

# libFuzzer on the core: every harness for FUZZ_RUNS executions (1,000,000)
# bounded by FUZZ_TIME seconds each; fails on any crash, leak or broken
# property. The split harness needs about 300 s for its million.
FUZZ_TIME ?= 330
fuzz: check-deps-fuzz
	FUZZ_TIME=$(FUZZ_TIME) bash fuzz/run

# HTML API reference, a page per module: the C module from the /*** doc
# comments of src/, the Lua modules from their --- comments; docs/API.md and
# the guides as topics, API.md's tables on the C module's page.
# Debian's lua-markdown ships markdown.lua for Lua 5.1 only, hence lua5.1.
LDOC ?= lua5.1 /usr/bin/ldoc
docs: check-deps-docs
	rm -rf build/docs
	$(LDOC) --fatalwarnings .
	lua5.1 scripts/docs-tables.lua build/docs/modules/streamtelecom.html

# The command gets a shebang naming the Lua it was built for: Debian's plain
# `lua` may be another version, which would not find this module.
BINDIR ?= $(PREFIX)/bin
install: $(SO) $(BUILD)/streamtelecom
	install -d $(DESTDIR)$(LUA_CMOD)
	install -m 0755 $(SO) $(DESTDIR)$(LUA_CMOD)/streamtelecom.so
	install -d $(DESTDIR)$(LUA_LMOD)/streamtelecom
	install -m 0644 lua/streamtelecom/campaign.lua $(DESTDIR)$(LUA_LMOD)/streamtelecom/campaign.lua
	install -d $(DESTDIR)$(LUA_LMOD)/streamtelecom/campaign
	for m in input journal runner report; do \
	  install -m 0644 lua/streamtelecom/campaign/$$m.lua $(DESTDIR)$(LUA_LMOD)/streamtelecom/campaign/$$m.lua; \
	done
	install -m 0644 lua/streamtelecom/haproxy.lua $(DESTDIR)$(LUA_LMOD)/streamtelecom/haproxy.lua
	install -m 0644 lua/streamtelecom/driver.lua $(DESTDIR)$(LUA_LMOD)/streamtelecom/driver.lua
	install -d $(DESTDIR)$(LUA_LMOD)/resty
	install -m 0644 lua/resty/streamtelecom.lua $(DESTDIR)$(LUA_LMOD)/resty/streamtelecom.lua
	install -d $(DESTDIR)$(BINDIR)
	sed '1s|^#!.*|#!/usr/bin/env $(LUA)|' bin/streamtelecom \
	  >$(DESTDIR)$(BINDIR)/streamtelecom
	chmod 0755 $(DESTDIR)$(BINDIR)/streamtelecom

clean:
	rm -rf build dist
