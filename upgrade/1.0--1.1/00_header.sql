-- logagg 1.0 -> 1.1 upgrade.  Assembled by the Makefile from the pieces in
-- upgrade/1.0--1.1/ in name order; every schema change of 1.1 is made both
-- here and in schema/, and test/t/006_upgrade.pl checks that the two agree.

\echo Use "ALTER EXTENSION logagg UPDATE" to load this file. \quit
