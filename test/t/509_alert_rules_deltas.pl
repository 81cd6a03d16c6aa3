# 509_alert_rules_deltas.pl -- alert rule counts go through one delta row
# per ingest batch, folded into the counters by the evaluator.  Without a
# dispatch worker (so nothing folds behind the test's back; the test runs
# logagg._evaluate_alert_rules() itself): a batch writes one delta row
# however many rules count it, and no more entries than groups x classes;
# a rolled-back batch writes none; rule_preview already counts pending
# deltas; a rule removed while its counts are pending gets no counters,
# a paused one does; a fold counts every delta once (a second evaluation
# changes nothing); a class of 800 rules works; group labels read straight from the attrs text equal
# those of the stored attrs jsonb; deltas committed before an immediate
# shutdown are folded after the restart, and the counters equal count(*)
# over the rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('alert_rules_deltas', "logagg.dispatch_workers = 0\n");
start_with_extension($node);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub ingest
{
	my ($source, $level, $n) = @_;
	my $recs = join(',', map { qq{{"source":"$source","level":"$level","message":"m $_"}} } 1 .. $n);
	return sql("SELECT logagg.ingest('[$recs]')");
}

# a rule's counters per source, as "source=n,...": records matching its
# whole filter, or with $total those of its ratio denominator
sub counted
{
	my ($rule, $total) = @_;
	my $filter = $total ? 'true' : 'm."full"';
	return sql(qq{SELECT coalesce(string_agg(s || '=' || n, ',' ORDER BY s), '')
		FROM (SELECT c.labels->>'source' AS s, sum(c.n) FILTER (WHERE $filter) AS n
		      FROM logagg._alert_rule_class_rules m
		      JOIN logagg._alert_rule_counts c ON c.class_id = m.class_id
		      JOIN logagg.alert_rules r ON r.id = m.rule_id
		      WHERE r.name = '$rule' GROUP BY 1) x WHERE n > 0});
}

# what the rows say: count(*) per source of d-* records matching $where
sub truth
{
	my ($where) = @_;
	return sql(qq{SELECT coalesce(string_agg(source || '=' || n, ',' ORDER BY source), '')
		FROM (SELECT source, count(*) AS n FROM logagg.logs WHERE source LIKE 'd-%' AND $where GROUP BY 1) x});
}

sql(q{SELECT logagg.add_alert_rule('d-count', '{"source": "d-*"}', '1 hour', 1000)});
sql(q{SELECT logagg.add_alert_rule('d-gone', '{"source": "d-*"}', '1 hour', 1000)});
sql(q{SELECT logagg.add_alert_rule('d-paused', '{"source": "d-*", "level": "error"}', '1 hour', 1000, paused => true)});
sql(q{SELECT logagg.add_alert_rule('d-ratio', '{"source": "d-*", "level": "error"}', '1 hour', 0.9, 'ratio')});
sql(q{SELECT count(logagg.add_alert_rule('d-many-' || i, '{"source": "d-*", "level": "error"}', '1 hour', 1000))
	FROM generate_series(1, 20) i});

ingest('d-a', 'error', 2);
ingest('d-a', 'info', 3);
ingest('d-b', 'error', 4);
$node->safe_psql('postgres', q{BEGIN; SELECT logagg.ingest('[{"source":"d-a","level":"error","message":"x"}]'); ROLLBACK;});

is(sql('SELECT count(*) FROM logagg._alert_rule_deltas'), '3',
	'one delta row per committed batch with 24 rules, none for the rolled-back one');
is(sql(q{SELECT max(cardinality(labels)) || ',' || max(cardinality(classes)) FROM logagg._alert_rule_deltas}), '1,1',
	'a batch of one group makes one entry of one class, not one per rule');
is(sql(q{SELECT string_agg((labels->>'source') || '=' || matched || '/' || total, ',' ORDER BY labels->>'source')
	FROM logagg.rule_preview('d-ratio')}), 'd-a=2/5,d-b=4/4', 'rule_preview counts the pending deltas');
is(sql('SELECT count(*) FROM logagg._alert_rule_counts'), '0', 'nothing folded yet');

my $gone = sql(q{SELECT id FROM logagg.alert_rules WHERE name = 'd-gone'});
sql(q{SELECT logagg.remove_alert_rule('d-gone')});
sql(q{SELECT logagg._evaluate_alert_rules()});
is(sql('SELECT count(*) FROM logagg._alert_rule_deltas'), '0', 'the evaluation folded every delta');
is(counted('d-count'), truth('true'), 'd-count: counters = count(*) per source');
is(counted('d-count'), 'd-a=5,d-b=4', 'd-count: 5 and 4');
is(counted('d-paused'), truth(q{level = 'error'}), 'a paused rule is folded too');
is(counted('d-ratio') . ' ' . counted('d-ratio', 1), 'd-a=2,d-b=4 d-a=5,d-b=4',
	'ratio: matched and denominator');
is(counted('d-many-13'), 'd-a=2,d-b=4', 'a rule of a class shared by 23 rules has its counts');
is(sql(q{SELECT count(*) || '/' || count(DISTINCT class_id) FROM logagg._alert_rule_class_rules m
	JOIN logagg.alert_rules r ON r.id = m.rule_id WHERE r.name LIKE 'd-many-%'}), '20/1',
	'the 20 rules with the same filter share one class');
is(sql('SELECT count(*) FROM logagg._alert_rule_counts'), '3',
	'three counter rows (2 classes x groups) for 23 rules');
is(sql("SELECT count(*) FROM logagg._alert_rule_class_rules WHERE rule_id = $gone"), '0',
	'a rule removed while its counts were pending gets no counts');

my $before = sql(q{SELECT sum(n) || '/' || count(*) FROM logagg._alert_rule_counts});
sql(q{SELECT logagg._evaluate_alert_rules()});
is(sql(q{SELECT sum(n) || '/' || count(*) FROM logagg._alert_rule_counts}), $before,
	'a second evaluation counts nothing again');
is(sql(q{SELECT v.sample_log_id = (SELECT max(id) FROM logagg.logs WHERE source = 'd-b')
	FROM logagg._alert_rule_values((SELECT id FROM logagg.alert_rules WHERE name = 'd-count'), now(), '1 day') v
	WHERE v.labels->>'source' = 'd-b'}), 't', 'the sample is the latest record of the group');

# --- group labels read from the attrs text: the same as from its jsonb ---
sql(q{SELECT logagg.add_alert_rule('d-attr', '{"source": "x-k"}', '1 hour', 1000, 'count', ARRAY['attrs.k'])});
my $records = <<'JSON';
[
	{"source":"x-k","message":"1","k":7}, {"source":"x-k","message":"2","k":"x"},
	{"source":"x-k","message":"3","k":true}, {"source":"x-k","message":"4","k":null},
	{"source":"x-k","message":"5","k":1.50}, {"source":"x-k","message":"6","k":-0},
	{"source":"x-k","message":"7","k":"a\"b"}, {"source":"x-k","message":"8","k":{"n":[1,"}"]}},
	{"source":"x-k","message":"9","k":1,"k":2}, {"source":"x-k","message":"10"},
	{"source":"x-k","message":"11","kk":"no","k":"\u00e9"}, {"source":"x-k","message":"12","k":false},
	{"source":"x-k","message":"13","k":-12}, {"source":"x-k","message":"14","k":"sp ace","z":[1,{"k":"in"}]},
	{"source":"x-k","message":"15","k":12345678901234567890}, {"source":"x-k","message":"16","k":"7"},
	{"source":"x-k","message":"17","a\"k":5,"k":"after"}, {"source":"x-k","message":"18","m":"x \"k\": 9"},
	{"source":"x-k","message":"19","m":"k","k":"v19"}, {"source":"x-k","message":"20","m":"x\\","k":"v20"},
	{"source":"x-k","message":"21","m":"{","k":"v21"}, {"source":"x-k","message":"22","k" : "v22" ,"z":"k"},
	{"source":"x-k","message":"23","a\"k":5}, {"source":"x-k","message":"24","m":"\\\"k\": 1","k":2}
	]
JSON
sql("SELECT logagg.ingest(\$j\$$records\$j\$)");
my $want = sql(q{SELECT string_agg(l || '=' || n, ' ' ORDER BY l) FROM (
	SELECT jsonb_build_object('attrs.k', coalesce(attrs->>'k', ''))::text AS l, count(*) AS n
	FROM logagg.logs WHERE source = 'x-k' GROUP BY 1) x});
is(sql(q{SELECT string_agg(labels::text || '=' || matched, ' ' ORDER BY labels::text) FROM logagg.rule_preview('d-attr')}),
	$want, 'attrs.k labels: strings, numbers, booleans, null, nested, duplicates, escapes, "k" inside other keys and values');
sql(q{SELECT logagg._evaluate_alert_rules()});
is(sql(q{SELECT string_agg(labels::text || '=' || matched, ' ' ORDER BY labels::text) FROM logagg.rule_preview('d-attr')}),
	$want, 'the same once folded');

# the same records through the ingest port, whose scanner writes the attrs
# text the labels are then read from (through SQL, attrs come as jsonb)
sql(q{SELECT logagg.add_alert_rule('d-attr-http', '{"source": "x-h"}', '1 hour', 1000, 'count', ARRAY['attrs.k'])});
my $xh = sql(q{SELECT logagg.create_source('x-h')});
(my $lines = $records) =~ s/"source":"x-k",//g;
$lines =~ s/^\s*\[|\]\s*$//g;
$lines =~ s/\},\s*\{/}\n{/g;
my $res = HTTP::Tiny->new(timeout => 30)->post("http://127.0.0.1:$node->{logagg_port}/ingest",
	{ headers => { Authorization => "Bearer $xh" }, content => $lines });
like($res->{content}, qr/"accepted": 24, "rejected": 0/, 'the 24 records POSTed to /ingest are stored');
$want = sql(q{SELECT string_agg(l || '=' || n, ' ' ORDER BY l) FROM (
	SELECT jsonb_build_object('attrs.k', coalesce(attrs->>'k', ''))::text AS l, count(*) AS n
	FROM logagg.logs WHERE source = 'x-h' GROUP BY 1) x});
is(sql(q{SELECT string_agg(labels::text || '=' || matched, ' ' ORDER BY labels::text) FROM logagg.rule_preview('d-attr-http')}),
	$want, 'labels read from the scanner\'s attrs text equal those of the stored jsonb');

# --- a class of 800 rules: its key is longer than a btree entry may be ---
sql(q{SELECT count(logagg.add_alert_rule('w-' || i, '{"source": "w-src"}', '1 hour', 1000))
	FROM generate_series(1, 800) i});
ingest('w-src', 'info', 2);
sql(q{SELECT logagg._evaluate_alert_rules()});
is(counted('w-800'), 'w-src=2', 'the 800th rule of one class counts its 2 records');
cmp_ok(sql(q{SELECT max(length(key)) FROM logagg._alert_rule_classes}), '>', 3000, 'with a class key over 3000 bytes');
sql(q{SELECT count(logagg.remove_alert_rule(name)) FROM logagg.alert_rules WHERE name LIKE 'w-%'});

# --- deltas pending over an immediate shutdown ---
ingest('d-a', 'error', 7);
ingest('d-c', 'warn', 1);
is(sql('SELECT count(*) FROM logagg._alert_rule_deltas'), '2', 'two deltas pending');
$node->stop('immediate');
$node->start;
wait_workers_ready($node);
is(sql('SELECT count(*) FROM logagg._alert_rule_deltas'), '2', 'committed deltas survive the crash');
sql(q{SELECT logagg._evaluate_alert_rules()});
is(counted('d-count'), truth('true'), 'after the crash: d-count counters = count(*) per source');
is(counted('d-count'), 'd-a=12,d-b=4,d-c=1', 'd-count: 12, 4 and 1');
is(counted('d-many-7'), truth(q{level = 'error'}), 'after the crash: d-many-7 counters = count(*) per source');
is(counted('d-ratio', 1), truth('true'), 'after the crash: ratio denominators = count(*) per source');

done_testing();
