# 600_search.pl -- logagg.search() returns exactly what the equivalent
# plain SQL returns, without and with the search indexes; the indexes
# appear on new partitions at creation and on existing ones through
# maintenance (the maintenance worker, CREATE INDEX CONCURRENTLY), and
# search's own plans use them.
#
# Every comparison runs in one statement, so that now() -- the default
# of since and until -- is the same for search and for the reference
# query.  The reference queries are written independently of search's
# implementation: strpos(lower(...)) for the substring, ->> for attrs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;

my $node = new_node('search', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION pg_trgm;
SELECT logagg.maintain();
INSERT INTO logagg.logs (ts, source, level, severity, status, message, attrs)
SELECT now() - make_interval(secs => i * 2.5),
       (ARRAY['service-a', 'service-ab', 'service_b', 'web'])[1 + i % 4],
       'info',
       (ARRAY['critical', 'high', 'low'])[1 + (i / 4) % 3]::logagg.severity,
       200,
       CASE i % 8
           WHEN 0 THEN 'Payment FAILED for order ' || i
           WHEN 1 THEN 'payment ok ' || i
           WHEN 2 THEN '100% done_' || i
           WHEN 3 THEN 'path C:\tmp\' || i
           WHEN 4 THEN 'PaYmEnT retried ' || i
           WHEN 5 THEN NULL
           WHEN 6 THEN 'timeout after ' || (i % 50) || 'ms'
           ELSE 'timed after ' || i || 'ms 100x done1'
       END,
       jsonb_build_object('user', 'u' || (i % 10), 'region', CASE WHEN i % 3 = 0 THEN 'eu' ELSE 'us' END,
                          'n', i % 5, 'tags', jsonb_build_array('t' || (i % 2)))
  FROM generate_series(1, 4000) i;
-- ties on ts: order falls back to id
INSERT INTO logagg.logs (ts, source, severity, message)
SELECT date_trunc('second', now()) - interval '10 minutes', 'web', 'low', 'same instant ' || i
  FROM generate_series(1, 5) i;
ANALYZE logagg.logs;
});

# [search arguments, WHERE of the reference query, LIMIT of the reference]
my $wide = q{since => now() - interval '3 hours', until => now() + interval '1 minute'};
my $wide_ref = q{ts >= now() - interval '3 hours' AND ts < now() + interval '1 minute'};
my @cases = (
	[ "'payment', $wide, lim => 10000", "strpos(lower(message), 'payment') > 0", 10000, 'substring, any case' ],
	[ "'FAILED', $wide, lim => 10000", "strpos(lower(message), 'failed') > 0", 10000, 'upper-case query' ],
	[ "'100%', $wide, lim => 10000", "strpos(message, '100%') > 0", 10000, '% is literal' ],
	[ "'done_', $wide, lim => 10000", "strpos(message, 'done_') > 0", 10000, '_ is literal' ],
	[ q{'C:\tmp\1', } . "$wide, lim => 10000", q{strpos(message, 'C:\tmp\1') > 0}, 10000, 'backslash is literal' ],
	[ "'/time(out|d) after [0-9]+ms/', $wide, lim => 10000", "message ~ 'time(out|d) after [0-9]+ms'", 10000, 'regex' ],
	[ "'/^payment/', $wide, lim => 10000", "message ~ '^payment'", 10000, 'regex is case-sensitive' ],
	[ "'/(?i)^payment/', $wide, lim => 10000", "lower(message) ~ '^payment'", 10000, 'regex with (?i)' ],
	[ "NULL, $wide, lim => 10000", "true", 10000, 'no q: everything in the window' ],
	[ "'', $wide, lim => 10000", "true", 10000, 'empty q: everything in the window' ],
	[ "'payment', $wide, source => 'service-a', lim => 10000",
		"strpos(lower(message), 'payment') > 0 AND source = 'service-a'", 10000, 'source by name' ],
	[ "NULL, $wide, source => 'service-a*', lim => 10000",
		"left(source, 9) = 'service-a'", 10000, 'source pattern' ],
	[ "NULL, $wide, source => 'web,service_*', lim => 10000",
		"(source = 'web' OR left(source, 8) = 'service_')", 10000, 'pattern list, _ literal' ],
	[ "NULL, $wide, min_severity => 'high', lim => 10000",
		"severity IN ('critical', 'high')", 10000, 'min_severity high' ],
	[ "NULL, $wide, min_severity => 'critical', lim => 10000",
		"severity = 'critical'", 10000, 'min_severity critical' ],
	[ qq{NULL, $wide, attrs => '{"region": "eu", "n": 1}', lim => 10000},
		"attrs->>'region' = 'eu' AND attrs->>'n' = '1'", 10000, 'attrs containment' ],
	[ qq{NULL, $wide, attrs => '{"tags": ["t1"]}', lim => 10000},
		"attrs->'tags'->>0 = 't1'", 10000, 'attrs containment in an array' ],
	[ "'payment', since => now() - interval '1 hour', until => now() - interval '30 minutes', lim => 10000",
		"strpos(lower(message), 'payment') > 0", 10000, 'since and until', 'win' ],
	[ "'timeout', $wide, lim => 7", "strpos(lower(message), 'timeout') > 0", 7, 'limit keeps the newest' ],
	[ "'timeout'", "strpos(lower(message), 'timeout') > 0", 100, 'defaults: the last hour, 100 rows', 'default' ],
	[ "'same instant', $wide", "message LIKE 'same instant%'", 100, 'ties on ts: newest id first' ],
	[ qq{'payment', $wide, source => 'service-a*', min_severity => 'high', attrs => '{"region": "us"}', lim => 10000},
		"strpos(lower(message), 'payment') > 0 AND left(source, 9) = 'service-a' AND severity <= 'high' AND attrs->>'region' = 'us'",
		10000, 'all filters together' ],
	[ "'no such text anywhere', $wide", "false", 100, 'no match' ],
	# newest first: found in the first windows, or after them by rate, or
	# in the rest through the index
	[ "'timeout', $wide, lim => 200", "strpos(lower(message), 'timeout') > 0", 200, 'dense text, more than the first windows hold' ],
	[ "'sentinel', $wide", "strpos(message, 'sentinel') > 0", 100, 'rare text only in older rows' ],
	[ "'payment', since => NULL, until => NULL, lim => 3000", "strpos(lower(message), 'payment') > 0", 3000, 'no since, no until' ],
	[ "'same instant', since => now() - interval '3 hours', until => date_trunc('second', now()) - interval '9 minutes'",
		"message LIKE 'same instant%'", 100, 'rows on a window boundary', 'boundary' ],
	[ "'timeout', since => now() - interval '3 hours', until => 'infinity', lim => 50",
		"strpos(lower(message), 'timeout') > 0", 50, 'until infinity', 'open' ],
	[ "'timeout', since => NULL, until => '-infinity'", "false", 100, 'until -infinity' ],
	[ "'größe', $wide", "strpos(lower(message), 'größe') > 0", 100, 'text that is not ASCII' ],
	[ "'GRÖSSE 12', $wide", "strpos(lower(message), 'grösse 12') > 0", 100, 'text that is not ASCII, with digits' ],
	# words with a digit go to the index alone, the whole text checked after
	[ "'order 1200', $wide, lim => 10000", "strpos(lower(message), 'order 1200') > 0", 10000, 'a word with a digit' ],
	[ "'FOR ORDER 120', $wide, lim => 10000", "strpos(lower(message), 'for order 120') > 0", 10000, 'a word with a digit, any case' ],
	[ "'after 7ms', $wide, lim => 10000", "strpos(message, 'after 7ms') > 0", 10000, 'a word with a digit and letters' ],
	[ q{'\1003', } . "$wide, lim => 10000", q{strpos(message, '\1003') > 0}, 10000, 'a word with a digit after a backslash' ],
	[ "'_1002 ', $wide, lim => 10000", "strpos(message, '_1002 ') > 0", 10000, 'a word with a digit after a literal _, no match' ],
	[ "'done_1002', $wide, lim => 10000", "strpos(message, 'done_1002') > 0", 10000, 'a word with a digit after a literal _, found' ],
	[ "'payment ok 4001', $wide, lim => 10000", "message = 'payment ok 4001'", 10000, 'a number in no row' ],
	[ "'/order 12[0-9]+/', $wide, lim => 10000", "message ~ 'order 12[0-9]+'", 10000, 'a regex with a number' ],
);

sub check_cases
{
	my ($label) = @_;
	for my $c (@cases)
	{
		my ($args, $where, $lim, $name, $window) = @$c;
		my $range = $wide_ref;
		$range = "ts >= now() - interval '1 hour' AND ts < now() - interval '30 minutes'"
		  if ($window // '') eq 'win';
		$range = "ts >= now() - interval '1 hour' AND ts < now()" if ($window // '') eq 'default';
		$range = "ts >= now() - interval '3 hours' AND ts < date_trunc('second', now()) - interval '9 minutes'"
		  if ($window // '') eq 'boundary';
		$range = "ts >= now() - interval '3 hours'" if ($window // '') eq 'open';
		my $r = sql(qq{
SELECT coalesce((SELECT string_agg(id::text, ',' ORDER BY n) FROM
                   (SELECT id, row_number() OVER () AS n FROM logagg.search($args)) s), '') || ' | ' ||
       coalesce((SELECT string_agg(id::text, ',' ORDER BY ts DESC, id DESC) FROM
                   (SELECT id, ts FROM logagg.logs WHERE $range AND ($where)
                     ORDER BY ts DESC, id DESC LIMIT $lim) r), '')});
		my ($got, $want) = split / \| /, $r, 2;
		$want //= '';
		my $count = $want eq '' ? 0 : scalar(split /,/, $want);
		is($got // '', $want, "$label: $name ($count rows)");
	}
	# the reference queries find something, so the comparison means something
}

is(sql(q{SELECT count(*) FROM logagg.logs WHERE strpos(lower(message), 'payment') > 0 AND ts >= now() - interval '1 hour'}) > 100,
	1, 'the data set has matches in the last hour');
is(sql(q{SELECT count(*) FROM pg_indexes WHERE schemaname = 'logagg' AND indexname ~ '_(message_trgm|attrs_gin)$'}),
	'0', 'no search index while the settings are off');
check_cases('without indexes');

# errors
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT * FROM logagg.search('/(unclosed/')});
like($err, qr/invalid regular expression/, 'an invalid regex is an error');
($ret, $out, $err) = $node->psql('postgres', q{SELECT * FROM logagg.search('x', lim => -1)});
like($err, qr/lim must be 0 or more/, 'a negative limit is an error');
($ret, $out, $err) = $node->psql('postgres', q{SELECT * FROM logagg.search('x', source => 'bad pattern!*')});
like($err, qr/invalid source pattern/, 'an invalid source pattern is an error');

# turn the indexes on: existing partitions get them from the worker
$node->append_conf('postgresql.conf', "logagg.index_messages = on\nlogagg.index_attrs = on\n");
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('logagg.index_messages') = 'on'})
  or die 'setting not reloaded';
sql('SELECT logagg.maintain()');
my $nparts = sql('SELECT count(*) FROM logagg.partitions');
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = 2 * $nparts FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relname ~ '_(message_trgm|attrs_gin)\$' AND i.indisvalid
   AND i.indrelid IN (SELECT partition FROM logagg.partitions)}),
	'every existing partition (the default one included) gets both search indexes');
is(sql(q{SELECT count(*) FROM logagg._search_index_todo()}), '0', 'nothing left to build');
like(slurp_file($node->logfile), qr/built search index: CREATE INDEX CONCURRENTLY logs_\d+_message_trgm/,
	'the worker built them CONCURRENTLY');

# a partition made now gets them at creation, without the worker
sql(q{SELECT logagg._create_partitions(now() + interval '5 days')});
my $newest = sql(q{SELECT partition FROM logagg.partitions ORDER BY range_start DESC NULLS LAST LIMIT 1});
is(sql(qq{SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = '$newest'::regclass AND c.relname ~ '_(message_trgm|attrs_gin)\$'}),
	join(',', map { ($newest =~ s/^logagg\.//r) . $_ } ('_attrs_gin', '_message_trgm')),
	'a new partition is created with both search indexes');
check_cases('with indexes');

# search's own plans use them (auto_explain shows the nested statement)
sub search_plan
{
	my ($call) = @_;
	my ($r, $o, $e) = $node->psql('postgres', qq{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET enable_seqscan = off;
SELECT count(*) FROM $call;});
	return $e;
}
like(search_plan(q{logagg.search('sentinel', since => NULL, until => NULL)}),
	qr/Bitmap Index Scan on logs_\w+_message_trgm/, 'a substring search uses the trigram index');
like(search_plan(q{logagg.search('/sentinel (event|day)/', since => NULL, until => NULL)}),
	qr/Bitmap Index Scan on logs_\w+_message_trgm/, 'a regex search uses the trigram index');
like(search_plan(q{logagg.search(NULL, since => NULL, until => NULL, attrs => '{"region": "eu"}')}),
	qr/Bitmap Index Scan on logs_\w+_attrs_gin/, 'an attrs search uses the jsonb_path_ops index');

# How search runs.  Dense text: the newest rows, read and filtered,
# without the index (the first windows hold 7 'timeout' rows).
my $plan = search_plan(q{logagg.search('timeout', lim => 7)});
like($plan, qr/Filter: .*strpos\(lower\(message\), 'timeout'::text\) > 0\) IS TRUE/, 'dense text: newest rows read and filtered');
unlike($plan, qr/message_trgm/, 'dense text: no trigram index scan');
# Rare text: nothing in the first windows, the rest through the index.
$plan = search_plan(qq{logagg.search('sentinel', $wide, lim => 1000)});
like($plan, qr/IS TRUE(.|\n)*Bitmap Index Scan on logs_\w+_message_trgm/, 'rare text: first windows, then the index');
# A word with a digit: the index is asked for that word alone.
$plan = search_plan(qq{logagg.search('timed after 1007ms', $wide)});
like($plan, qr/Index Cond: \(message ~~\* '%1007ms%'::text\)/, 'a word with a digit: the index looks up that word');
unlike($plan, qr/Index Cond: \(message ~~\* '%timed after/, 'a word with a digit: not the common words');
is(sql(qq{SELECT string_agg(message, ',') FROM logagg.search('timed after 1007ms', $wide)}),
	'timed after 1007ms 100x done1', 'and finds the row');

# without pg_trgm: a clear warning, no failure, attrs still indexed
sql('DROP EXTENSION pg_trgm CASCADE');
($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg._create_partitions(now() + interval '9 days')});
is($ret, 0, 'partition creation works without pg_trgm');
like($err, qr/WARNING:  logagg.index_messages is on but extension pg_trgm is not installed.*\n.*HINT:  Run CREATE EXTENSION pg_trgm/,
	'with a WARNING and a HINT');
$newest = sql(q{SELECT partition FROM logagg.partitions ORDER BY range_start DESC NULLS LAST LIMIT 1});
is(sql(qq{SELECT string_agg(c.relname, ',') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = '$newest'::regclass AND c.relname ~ '_(message_trgm|attrs_gin)\$'}),
	($newest =~ s/^logagg\.//r) . '_attrs_gin', 'the attrs index is made all the same');
check_cases('without pg_trgm');

$node->stop;
done_testing();
