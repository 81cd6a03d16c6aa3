# logagg — PGXS build.  `make && sudo make install` builds the extension
# and the emitter; `./test/run` runs every test suite.

EXTENSION   = logagg
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\\(.*\\)'/\\1/p" logagg.control)
MODULE_big  = logagg
# Released install scripts are committed and never change (logagg--1.0.sql);
# the newest version's script is assembled from schema/*.sql and each
# upgrade script from the pieces in upgrade/FROM--TO/.  test/t/006_upgrade.pl
# proves that installing an old version and running ALTER EXTENSION UPDATE
# gives the same objects as a fresh install of the newest.
DATA        = logagg--1.0.sql
UPGRADES    = $(notdir $(wildcard upgrade/*--*))
DATA_built  = logagg--$(EXTVERSION).sql $(foreach u,$(UPGRADES),logagg--$(u).sql)
PGFILEDESC  = "logagg - log aggregation and alerting"

SRCS        = $(sort $(wildcard src/*.c))
OBJS        = $(SRCS:.c=.o)
SCHEMA      = $(sort $(wildcard schema/*.sql))

PG_CONFIG  ?= pg_config
PKG_LIBS    = libwebsockets libuv libcurl zlib

PG_CPPFLAGS = -Isrc $(shell pkg-config --cflags $(PKG_LIBS))
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK  = $(shell pkg-config --libs $(PKG_LIBS)) -lcrypto

# pg_regress on a throwaway instance with logagg preloaded
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-config=$(CURDIR)/test/regress.conf --temp-instance=$(CURDIR)/tmp_check_regress \
               --load-extension=logagg
# PostgreSQL::Test::Cluster tests (test/t/*.pl) run through test/tap.sh,
# which gives each run its own TESTDIR; see test/run.

EXTRA_CLEAN  = tmp_check_regress emitters/logagg-emit

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every object depends on the headers in src/ (few, small, shared).
$(OBJS): $(wildcard src/*.h)

# The newest version's script is assembled from schema/*.sql so that each
# responsibility keeps its SQL beside its C file's name.
logagg--$(EXTVERSION).sql: $(SCHEMA)
	cat $(SCHEMA) > $@

# An upgrade script is assembled from its pieces, in name order, so that
# unrelated changes of one release live in files of their own.
define upgrade_rule
logagg--$(1).sql: $$(sort $$(wildcard upgrade/$(1)/*.sql))
	cat $$^ > $$@
endef
$(foreach u,$(UPGRADES),$(eval $(call upgrade_rule,$(u))))

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
