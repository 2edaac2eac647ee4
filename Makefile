# athost: AT-command dialogues with cellular modules, scripted in Lua.
#
#   make            build ./athost (and libathost)
#   make check      install what is missing, build, run every test, also
#                   under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       Aliyun provisioning on the virtual Air720 and a local
#                   mosquitto broker; MODEM=air780e (any virtual modem)
#                   runs it on another one
#   make bench      round-trip rate against a bare C loop, peak RSS
#   make fuzz       every libFuzzer harness in fuzz/ for FUZZ_SECONDS (60)
#                   each, or FUZZ_RUNS executions each
#   make install    PREFIX=/usr/local DESTDIR= (the flows, scripts/*.lua
#                   and scripts/sim/*.lua; not the development scripts
#                   deps.sh and demo.sh)

PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share/athost
CC ?= cc
.DEFAULT_GOAL := all
CFLAGS ?= -O2 -g
BUILD ?= build

PKGS := lua5.4 libuv openssl libedit
# libathost's version; the SONAME carries the major one (an ABI break
# bumps it).
VERSION := 0.1.0
SOMAJOR := 0
SONAME := libathost.so.$(SOMAJOR)
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
CJSON_A := $(shell $(CC) -print-file-name=liblua5.4-cjson.a)

override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wpedantic -Werror -fPIC \
	$(shell $(PKG_CONFIG) --cflags $(PKGS)) \
	-DATHOST_LIBDIR='"$(DATADIR)/lib"' -DATHOST_DATADIR='"$(DATADIR)"'
LDLIBS := $(CJSON_A) $(shell $(PKG_CONFIG) --libs $(PKGS)) -lm

LIB_SRC := host/host.c host/flow.c host/event.c host/lhost.c host/chat.c \
	host/pattern.c host/port.c host/lport.c host/lchat.c host/lopen.c \
	host/transcript.c host/redact.c host/crypto.c host/tls.c host/ltls.c host/station.c host/lfile.c \
	host/telnet.c host/rfc2217.c host/ledit.c host/lalloc.c host/core.c
LIB_OBJ := $(LIB_SRC:host/%.c=$(BUILD)/%.o)
HDRS := $(wildcard host/*.h)

.PHONY: all check test bench demo install uninstall clean deps asan unit FORCE \
	fuzz fuzz-build

# C unit tests of single modules (the Lua tests drive the whole program):
# tests/unit/X_test.c links the host sources it tests, named in its first
# line as "// unit: host/a.c host/b.c".
UNIT := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(wildcard tests/unit/*_test.c))
# what the tests share (tests/unit/pattern_lua.c: ours against string.find)
UNIT_SHARED := $(filter-out %_test.c,$(wildcard tests/unit/*.c tests/unit/*.h))

unit: $(UNIT)

$(BUILD)/unit/%: tests/unit/%.c $(LIB_SRC) $(HDRS) $(UNIT_SHARED)
	mkdir -p $(BUILD)/unit
	$(CC) $(CFLAGS) -Ihost $(LDFLAGS) -o $@ $< \
	    $$(sed -n '1s|^// unit: ||p' $<) $(shell $(PKG_CONFIG) --libs lua5.4)

all: athost $(BUILD)/libathost.a $(BUILD)/libathost.so $(BUILD)/athost.pc

$(BUILD)/%.o: host/%.c $(HDRS) | $(BUILD)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# The install paths are compiled in (host.c) and written into athost.pc:
# both are rebuilt when PREFIX, LIBDIR or DATADIR change.
PATHS := $(PREFIX):$(LIBDIR):$(INCLUDEDIR):$(DATADIR)
$(BUILD)/paths.stamp: FORCE | $(BUILD)
	@[ "$$(cat $@ 2>/dev/null)" = "$(PATHS)" ] || echo "$(PATHS)" > $@
$(BUILD)/host.o: $(BUILD)/paths.stamp
FORCE:

$(BUILD):
	mkdir -p $(BUILD)

$(BUILD)/libathost.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libathost.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ -llua5.4-cjson $(shell $(PKG_CONFIG) --libs $(PKGS)) -lm

# The link-time name and the SONAME's, as a distribution lays them out.
$(BUILD)/libathost.so: $(BUILD)/libathost.so.$(VERSION)
	ln -sf libathost.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf libathost.so.$(VERSION) $@

athost: $(BUILD)/main.o $(BUILD)/libathost.a
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/main.o $(BUILD)/libathost.a $(LDLIBS)

$(BUILD)/athost.pc: athost.pc.in Makefile $(BUILD)/paths.stamp | $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@DATADIR@|$(DATADIR)|' \
	    -e 's|@CJSON_A@|$(CJSON_A)|' $< > $@

# The same program built with the sanitizers, for make check.
asan:
	$(MAKE) BUILD=build/asan CFLAGS='-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined' \
	    LDFLAGS='-fsanitize=address,undefined' build/asan/athost unit

build/asan/athost: $(BUILD)/main.o $(BUILD)/libathost.a
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/main.o $(BUILD)/libathost.a $(LDLIBS)

deps:
	sh scripts/deps.sh

check:
	sh scripts/deps.sh
	$(MAKE) all unit
	$(MAKE) asan
	$(MAKE) fuzz-build
	sh tests/run.sh $(T)

# libFuzzer harnesses (fuzz/*.c; fuzz/lua_target.c runs fuzz/NAME.lua for
# the codecs written in Lua), built with clang and the sanitizers. make
# check runs each for a short fixed number of executions (tests/run.sh);
# make fuzz runs each longer, keeping what it finds in build/fuzz/corpus/.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_C := chat_ops chat_split pattern_find redact telnet
FUZZ_LUA := http11 mqtt311 atparse
FUZZ_DIR ?= build/fuzz
FUZZ_BIN := $(addprefix $(FUZZ_DIR)/,$(FUZZ_C) $(FUZZ_LUA))
# FUZZ_SAN=undefined builds without AddressSanitizer: several times the
# executions a second, for long runs that look for wrong results more
# than for memory errors.
FUZZ_SAN ?= address,undefined
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,$(FUZZ_SAN) \
	-fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -Wall -Wextra \
	-Wpedantic -Werror -Ihost -Ifuzz -Itests/unit \
	$(shell $(PKG_CONFIG) --cflags lua5.4)
FUZZ_LIBS := $(shell $(PKG_CONFIG) --libs lua5.4)

fuzz-build: $(FUZZ_BIN)

$(FUZZ_DIR)/chat_ops $(FUZZ_DIR)/chat_split: $(FUZZ_DIR)/%: fuzz/%.c host/chat.c \
		host/pattern.c fuzz/fuzz.h fuzz/chat_common.h $(HDRS)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< host/chat.c host/pattern.c

$(FUZZ_DIR)/redact: fuzz/redact.c fuzz/redact_ref.h host/redact.c \
		host/redact.h fuzz/fuzz.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< host/redact.c

$(FUZZ_DIR)/telnet: fuzz/telnet.c host/telnet.c host/rfc2217.c fuzz/fuzz.h \
		$(HDRS)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(shell $(PKG_CONFIG) --cflags libuv) -o $@ $< \
	    host/telnet.c host/rfc2217.c

$(FUZZ_DIR)/pattern_find: fuzz/pattern_find.c host/pattern.c \
		tests/unit/pattern_lua.c tests/unit/pattern_lua.h fuzz/fuzz.h $(HDRS)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< host/pattern.c tests/unit/pattern_lua.c \
	    $(FUZZ_LIBS)

$(addprefix $(FUZZ_DIR)/,$(FUZZ_LUA)): $(FUZZ_DIR)/%: fuzz/lua_target.c fuzz/fuzz.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DFUZZ_TARGET='"$*"' -DFUZZ_ROOT='"$(CURDIR)"' \
	    -o $@ $< $(FUZZ_LIBS)

fuzz: fuzz-build
	@for f in $(FUZZ_C) $(FUZZ_LUA); do \
	    sh fuzz/run.sh $$f $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS)) \
	        || exit 1; \
	done

test: check

bench: all
	bash bench/run.sh ./athost

MODEM ?= air720

demo:
	sh scripts/deps.sh
	$(MAKE) all
	MODEM='$(MODEM)' sh scripts/demo.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(DATADIR)/lib
	install -m 755 athost $(DESTDIR)$(BINDIR)/athost
	install -m 644 $(BUILD)/libathost.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libathost.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libathost.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf libathost.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libathost.so
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	install -m 644 athost.1 $(DESTDIR)$(MANDIR)/man1/athost.1
	install -m 644 completion/athost.bash $(DESTDIR)$(BASHCOMPDIR)/athost
	install -m 644 host/athost.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(BUILD)/athost.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	cp -R lib/athost $(DESTDIR)$(DATADIR)/lib/
	install -d $(DESTDIR)$(DATADIR)/clouds $(DESTDIR)$(DATADIR)/scripts/sim
	install -m 644 clouds/*.lua $(DESTDIR)$(DATADIR)/clouds/
	install -m 644 scripts/*.lua $(DESTDIR)$(DATADIR)/scripts/
	install -m 644 scripts/sim/*.lua $(DESTDIR)$(DATADIR)/scripts/sim/

uninstall:
	rm -rf $(DESTDIR)$(BINDIR)/athost $(DESTDIR)$(LIBDIR)/libathost.* \
	    $(DESTDIR)$(INCLUDEDIR)/athost.h $(DESTDIR)$(LIBDIR)/pkgconfig/athost.pc \
	    $(DESTDIR)$(MANDIR)/man1/athost.1 $(DESTDIR)$(BASHCOMPDIR)/athost \
	    $(DESTDIR)$(DATADIR)

clean:
	rm -rf build athost bench/build
