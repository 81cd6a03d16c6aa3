# 501_alert_rules_crash.pl -- alert rule counts are exact across a crash.
# Five rules (status range, source glob + levels, ratio, message regex,
# attrs containment with an attrs.KEY label, min_severity) count a durable
# stream that logagg-emit sends as fast as acks allow; the postmaster is
# stopped with "pg_ctl -m immediate" in the middle and started again, the
# emitter resumes.  Afterwards every rule's counts, per group, equal
# SELECT count(*) FROM logagg.logs WHERE <the rule's filter> AND ts in the
# window: nothing lost, nothing counted twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout);
use Time::HiRes qw(time usleep);
use LogaggTest;

my $n = 120_000;
my $stream = 'rules-S';
my $node = new_node('alert_rules_crash', "logagg.dispatch_workers = 1\nlogagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-crash')");

# rule name => [add_alert_rule arguments after the name, SQL for its labels, SQL filter]
my %rules = (
	'r5xx' => [ q{'{"status": [500, 599]}', '1 hour', 100, 'count', ARRAY['source', 'status']},
		q{jsonb_build_object('source', source, 'status', status::text)},
		q{status BETWEEN 500 AND 599} ],
	'rerr' => [ q{'{"source": "svc-*", "level": ["error", "warn"]}', '1 hour', 100, 'count', ARRAY['level']},
		q{jsonb_build_object('level', level)},
		q{source LIKE 'svc-%' AND level IN ('error', 'warn')} ],
	'rregex' => [ q{'{"message_regex": "^(GET|DELETE) "}', '1 hour', 100, 'count', ARRAY[]::text[]},
		q{'{}'::jsonb},
		q{message ~ '^(GET|DELETE) '} ],
	'rattrs' => [ q{'{"attrs": {"method": "POST"}, "status": 404}', '1 hour', 100, 'count', ARRAY['attrs.method', 'severity']},
		q{jsonb_build_object('attrs.method', coalesce(attrs->>'method', ''), 'severity', severity::text)},
		q{attrs @> '{"method": "POST"}' AND status = 404} ],
	'rsev' => [ q{'{"min_severity": "high"}', '1 hour', 100, 'count', ARRAY['severity']},
		q{jsonb_build_object('severity', severity::text)},
		q{severity <= 'high'} ],
);
for my $r (sort keys %rules)
{
	$node->safe_psql('postgres', "SELECT logagg.add_alert_rule('$r', $rules{$r}[0])");
}
# ratio: 4xx/5xx among all of the source
$node->safe_psql('postgres',
	q{SELECT logagg.add_alert_rule('rratio', '{"status": [400, 599]}', '1 hour', 0.5, 'ratio')});

sub stored
{
	return $node->safe_psql('postgres', "SELECT count(*) FROM logagg.logs WHERE stream = '$stream'");
}

my ($out, $err) = ('', '');
my $h = start([ emitter_path(), '--url', "ws://127.0.0.1:$port/ingest", '--token', $token,
		'--stream', $stream, '--count', $n, '--rate', '40000', '--profile', 'a', '--batch', '50' ],
	'>', \$out, '2>', \$err, timeout(180));

my $before = 0;
ok(poll_until(sub { $before = stored(); $before >= 20_000 }, 90), 'ingest under way before the crash');
cmp_ok($before, '<', $n - 20_000, "the crash comes mid-run ($before rows stored)");
$node->stop('immediate');
usleep(300_000);
$node->start;
wait_workers_ready($node);

my $finished = eval { finish($h); 1 };
is($finished ? $? >> 8 : -1, 0, 'the emitter finished after the restart') or diag("$out $err $@");
is(stored(), $n, "the stream holds its $n records once");
like(slurp_file($node->logfile), qr/database system was not properly shut down/,
	'the restart went through crash recovery');

for my $r (sort keys %rules)
{
	my ($args, $labels, $where) = @{ $rules{$r} };
	my $res = $node->safe_psql('postgres', qq{
WITH p AS (SELECT labels, matched, window_start FROM logagg.rule_preview('$r')),
     l AS (SELECT $labels AS labels, count(*) AS n FROM logagg.logs
            WHERE $where AND ts >= (SELECT min(window_start) FROM p) GROUP BY 1)
SELECT count(*) FILTER (WHERE p.matched IS DISTINCT FROM l.n) || ',' || coalesce(sum(l.n), 0) || ',' || count(*)
FROM p FULL JOIN l USING (labels)});
	my ($diff, $total, $groups) = split /,/, $res;
	is($diff, 0, "rule $r: counts equal count(*) of logs in every group ($groups groups)");
	cmp_ok($total, '>', 0, "rule $r counted something ($total)");
}
my $ratio = $node->safe_psql('postgres', q{
WITH p AS (SELECT labels, matched, total, window_start FROM logagg.rule_preview('rratio')),
     l AS (SELECT jsonb_build_object('source', source) AS labels,
                  count(*) FILTER (WHERE status BETWEEN 400 AND 599) AS m, count(*) AS t
             FROM logagg.logs WHERE ts >= (SELECT min(window_start) FROM p) GROUP BY 1)
SELECT count(*) FILTER (WHERE p.matched IS DISTINCT FROM l.m OR p.total IS DISTINCT FROM l.t) || ',' || sum(l.t)
FROM p FULL JOIN l USING (labels)});
is($ratio, "0,$n", 'ratio rule: matching and total counts equal the logs');

$node->stop;
done_testing();
