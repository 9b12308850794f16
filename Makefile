# streamtelecom: build, test, demo.
#   make            build the module for Lua 5.4 (build/lua5.4/streamtelecom.so)
#   make demo       send an SMS, read its status and the balance (fake gateway)
#   make test       the whole spec suite against the fake gateway
#   make asan       the specs on an ASan+UBSan build
#   make valgrind   the specs under valgrind memcheck
#   make install    copy the module to $(DESTDIR)$(LUA_CMOD)
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
CURL_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS := $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)

CC ?= cc
CFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers
ALL_CFLAGS := -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
              $(WARNINGS) $(CFLAGS) $(LUA_CFLAGS) $(CURL_CFLAGS)
# No -llua: the host program (lua, luajit, nginx) provides the Lua symbols.
ALL_LDFLAGS := -shared $(LDFLAGS)
LIBS := $(CURL_LIBS) -lpthread -lm

CORE_SRC := src/st_buf.c src/st_error.c src/st_text.c src/st_validate.c \
            src/st_request.c src/st_parse.c src/st_segments.c src/st_transport.c src/st_calls.c src/st_engine.c \
            src/st_client.c
BIND_SRC := src/lua_streamtelecom.c src/lua_client.c src/lua_args.c
HEADERS := $(wildcard src/*.h)

BUILD ?= build/lua$(LUA_VERSION)
SO := $(BUILD)/streamtelecom.so
OBJ := $(patsubst src/%.c,$(BUILD)/%.o,$(CORE_SRC) $(BIND_SRC))

BUSTED := /usr/bin/busted
SPEC_ENV = LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" STREAMTELECOM_LUA="$(LUA)"

.PHONY: all test test-all demo asan valgrind install clean deps check-deps \
        fakegw rock bench bench-openresty docs fuzz

all: $(SO)

$(BUILD)/%.o: src/%.c $(HEADERS)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(SO): $(OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJ) $(LIBS)

# Debian packages the build, the demo and the specs need.
DEB_PACKAGES := gcc make pkg-config libcurl4-openssl-dev lua5.4 liblua5.4-dev \
                libluajit2-5.1-dev lua-busted lua-socket lua-cjson nginx libnginx-mod-http-lua \
                openssl curl valgrind

deps:
	@scripts/deps $(DEB_PACKAGES)

check-deps:
	@scripts/deps --check $(DEB_PACKAGES)

test: check-deps $(SO)
	$(SPEC_ENV) $(LUA) $(BUSTED)

# The suite on every Lua Debian has: each built warning-free (-Werror) and
# tested in turn, then one summary line over all of them.
LUA_VERSIONS := 5.4 5.3 5.2 5.1 jit
LUA_PACKAGES := lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev \
                luajit2 libluajit2-5.1-dev
test-all: check-deps
	@scripts/deps --check $(LUA_PACKAGES)
	@mkdir -p build; passed=0; failed=0; \
	for v in $(LUA_VERSIONS); do \
	  echo "== Lua $$v"; \
	  $(MAKE) -s LUA_VERSION=$$v CFLAGS="$(CFLAGS) -Werror" test \
	    >build/test-$$v.log 2>&1; \
	  line=$$(grep -E '^[0-9]+ passed, [0-9]+ failed' build/test-$$v.log | tail -1); \
	  if [ -z "$$line" ]; then tail -n 30 build/test-$$v.log; line="0 passed, 1 failed"; fi; \
	  echo "   $$line"; \
	  passed=$$((passed + $$(echo "$$line" | cut -d' ' -f1))); \
	  failed=$$((failed + $$(echo "$$line" | cut -d' ' -f3))); \
	done; \
	echo "$$passed passed, $$failed failed"; [ $$failed -eq 0 ]

demo: check-deps $(SO)
	@$(SPEC_ENV) scripts/demo

fakegw:
	fakegw/fakegw run

# Requests per second a single nginx worker serves while sends are in flight,
# blocking vs worker threads vs cosockets (examples/openresty/README.md).
bench-openresty: check-deps
	$(LUA) bench/openresty_modes.lua --latency 0.3

# Performance figures as ratios measured in one run; writes bench/results.md.
bench: check-deps $(SO)
	@scripts/deps --check lua-sec
	@mkdir -p build/bench
	$(SPEC_ENV) $(LUA) bench/run.lua

ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined
asan: check-deps
	$(MAKE) BUILD=build/asan-lua$(LUA_VERSION) CFLAGS="$(ASAN_FLAGS)" \
	        LDFLAGS="-fsanitize=address,undefined" all
	LUA_CPATH="$(CURDIR)/build/asan-lua$(LUA_VERSION)/?.so;;" \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=97 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/spec/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	STREAMTELECOM_LUA="$(LUA)" $(LUA) $(BUSTED)

valgrind: check-deps $(SO)
	$(SPEC_ENV) valgrind --quiet --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  --error-exitcode=99 --suppressions=$(CURDIR)/spec/valgrind.supp \
	  $(LUA) $(BUSTED)

# Builds the rockspec with Debian's luarocks into a throwaway tree and runs
# the balance example from that tree against the fake gateway.
ROCK_TREE := build/rock-tree
rock: check-deps
	@scripts/deps --check luarocks
	rm -rf $(ROCK_TREE)
	luarocks --lua-version $(LUA_ABI) --tree $(ROCK_TREE) make \
	  streamtelecom-*.rockspec >build/rock.log 2>&1 || { cat build/rock.log; exit 1; }
	@LUA_CPATH="$(CURDIR)/$(ROCK_TREE)/lib/lua/$(LUA_ABI)/?.so;;" \
	  STREAMTELECOM_LUA=$(LUA) scripts/demo

# libFuzzer on the core: every harness for FUZZ_RUNS executions (1,000,000)
# bounded by FUZZ_TIME seconds each; fails on any crash, leak or broken
# property. The split harness needs about 300 s for its million.
FUZZ_TIME ?= 330
fuzz:
	@scripts/deps --check clang libclang-rt-14-dev
	FUZZ_TIME=$(FUZZ_TIME) bash fuzz/run

# HTML API reference from the /*** doc comments of src/lua_streamtelecom.c.
# Debian's lua-markdown ships markdown.lua for Lua 5.1 only, hence lua5.1.
LDOC ?= lua5.1 /usr/bin/ldoc
docs:
	@scripts/deps --check lua-ldoc lua-markdown lua5.1
	rm -rf build/docs
	$(LDOC) --fatalwarnings .

# The command gets a shebang naming the Lua it was built for: Debian's plain
# `lua` may be another version, which would not find this module.
BINDIR ?= $(PREFIX)/bin
install: $(SO)
	install -d $(DESTDIR)$(LUA_CMOD)
	install -m 0755 $(SO) $(DESTDIR)$(LUA_CMOD)/streamtelecom.so
	install -d $(DESTDIR)$(LUA_LMOD)/streamtelecom
	install -m 0644 lua/streamtelecom/campaign.lua $(DESTDIR)$(LUA_LMOD)/streamtelecom/campaign.lua
	install -d $(DESTDIR)$(BINDIR)
	sed '1s|^#!.*|#!/usr/bin/env $(LUA)|' bin/streamtelecom \
	  >$(DESTDIR)$(BINDIR)/streamtelecom
	chmod 0755 $(DESTDIR)$(BINDIR)/streamtelecom

clean:
	rm -rf build
