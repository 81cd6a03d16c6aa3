# logagg — PGXS build.  `make && sudo make install` builds the extension,
# the emitter and logagg-tail; `./test/run` runs every test suite.

EXTENSION   = logagg
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\\(.*\\)'/\\1/p" logagg.control)
MODULE_big  = logagg
# Released install scripts are committed and never change (logagg--1.0.sql),
# and so are the upgrade scripts (logagg--FROM--TO.sql); the newest
# version's install script is assembled from schema/*.sql.
# test/t/006_upgrade.pl proves that installing an old version and running
# ALTER EXTENSION UPDATE gives the same objects as a fresh install of the
# newest.
DATA        = logagg--1.0.sql $(wildcard logagg--*--*.sql)
DATA_built  = logagg--$(EXTVERSION).sql
PGFILEDESC  = "logagg - log aggregation and alerting"

SRCS        = $(sort $(wildcard src/*.c src/ingest/*.c src/reader/*.c))
# Every proto/**/*.proto is compiled by protoc-c into build/proto/ (not
# committed): NAME.proto -> build/proto/NAME.pb-c.{c,h}, linked in.
PROTOS      = $(sort $(shell find proto -name '*.proto'))
PROTO_C     = $(patsubst proto/%.proto,build/proto/%.pb-c.c,$(PROTOS))
PROTO_H     = $(PROTO_C:.c=.h)
PROTO_OBJS  = $(PROTO_C:.c=.o)
OBJS        = $(SRCS:.c=.o) $(PROTO_OBJS)
SCHEMA      = $(sort $(wildcard schema/*.sql))

PG_CONFIG  ?= pg_config
PKG_LIBS    = libwebsockets libuv libcurl zlib

PG_CPPFLAGS = -Isrc -Ibuild/proto $(shell pkg-config --cflags $(PKG_LIBS)) -DLOGAGG_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK  = $(shell pkg-config --libs $(PKG_LIBS)) -lcrypto -lprotobuf-c -lsnappy

# Tests, declared the PGXS way: `make installcheck` runs pg_regress (sql/,
# expected/) and the isolation specs (test/isolation/), each on a throwaway
# instance with logagg preloaded; `make prove_installcheck` (or installcheck
# with TAP_TESTS=1 kept) runs the TAP tests in test/t/.  Each run's
# postgresql.conf is written by test/temp-conf with a free ingest port, so
# runs on one machine never fight over a port.  ./test/run is the one
# command that installs, builds and runs everything.
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-config=$(CURDIR)/tmp_check_regress.conf --temp-instance=$(CURDIR)/tmp_check_regress \
               --load-extension=logagg
ISOLATION    = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=$(CURDIR)/test/isolation --outputdir=$(CURDIR)/output_iso \
               --temp-config=$(CURDIR)/tmp_check_iso.conf --temp-instance=$(CURDIR)/tmp_check_iso \
               --load-extension=logagg
REGRESS_PREP = tmp_check_regress.conf tmp_check_iso.conf
TAP_TESTS    = 1
PROVE_TESTS  = $(sort $(wildcard test/t/*.pl))
PROVE_FLAGS  += -I $(CURDIR)/test/lib
export LOGAGG_SRC = $(CURDIR)

EXTRA_CLEAN  = build tmp_check_regress tmp_check_regress.conf tmp_check_iso.conf emitters/logagg-emit \
               tools/logagg-tail

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Only the TAP tests (PGXS runs them as part of installcheck).
.PHONY: prove_installcheck
prove_installcheck:
	$(prove_installcheck)

# A fresh configuration (free ingest port) for every test run.
.PHONY: tmp_check_regress.conf tmp_check_iso.conf
tmp_check_regress.conf:
	test/temp-conf contrib_regression 2 > $@
tmp_check_iso.conf:
	test/temp-conf isolation_regression 0 > $@

# The version is compiled in (LOGAGG_VERSION, e.g. the HTTP User-Agent).
src/curl_multi.o: logagg.control

# Every object depends on the headers in src/ and src/ingest/ (few, small,
# shared) and on the generated protobuf-c headers.
$(OBJS): $(wildcard src/*.h src/ingest/*.h src/reader/*.h) $(PROTO_H)

# protoc-c, one .proto at a time, imports resolved from proto/.  The
# generated code is not ours to keep warning-free: PostgreSQL's extra
# warnings are relaxed for it only.
build/proto/%.pb-c.c build/proto/%.pb-c.h: proto/%.proto
	@mkdir -p build/proto
	protoc-c --proto_path=proto --c_out=build/proto $<
$(PROTO_OBJS): CFLAGS += -Wno-error -Wno-missing-prototypes -Wno-declaration-after-statement

# The newest version's script is assembled from schema/*.sql so that each
# responsibility keeps its SQL beside its C file's name.
logagg--$(EXTVERSION).sql: $(SCHEMA)
	cat $(SCHEMA) > $@


# The web console (console/: index.html, app.js, style.css), served by the
# "logagg reader" worker from $(datadir)/extension/logagg_console/.
CONSOLE_FILES = $(sort $(wildcard console/*))
install: console-install
.PHONY: console-install console-uninstall
console-install:
	$(MKDIR_P) '$(DESTDIR)$(datadir)/extension/logagg_console'
	$(INSTALL_DATA) $(CONSOLE_FILES) '$(DESTDIR)$(datadir)/extension/logagg_console/'
uninstall: console-uninstall
console-uninstall:
	rm -rf '$(DESTDIR)$(datadir)/extension/logagg_console'

all: emitters
.PHONY: emitters emitters-install
emitters:
	@if [ -f emitters/Makefile ]; then $(MAKE) -C emitters; fi
install: emitters-install
emitters-install:
	@if [ -f emitters/Makefile ]; then $(MAKE) -C emitters install; fi
clean: emitters-clean
emitters-clean:
	@if [ -f emitters/Makefile ]; then $(MAKE) -C emitters clean; fi

# The command line tools (tools/: logagg-tail), built and installed with
# the emitter.
all: tools
.PHONY: tools tools-install tools-clean
tools:
	@if [ -f tools/Makefile ]; then $(MAKE) -C tools; fi
install: tools-install
tools-install:
	@if [ -f tools/Makefile ]; then $(MAKE) -C tools install; fi
clean: tools-clean
tools-clean:
	@if [ -f tools/Makefile ]; then $(MAKE) -C tools clean; fi
