# 620_console_browser.pl -- the web console in a real browser: Debian's
# chromium, headless, driven by puppeteer-core (test/clients/
# console_browser.js) against the "logagg reader" worker of a real server.
# Signs in with a reader token for service-a*, sees records arrive in the
# live tail, searches, reads the severity histogram and the alerts page;
# a message "<img src=x onerror=alert(1)>" is shown as text and runs
# nothing; a wrong token is refused; records and alerts of service-b never
# appear.  What the browser shows is compared with SQL here.  Screenshots
# of every view are kept in the TAP log directory (console/*.png).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use JSON::PP;
use LogaggTest;
use AlertReceivers;

my ($chromium) = grep { -x $_ } map { "$_/chromium" } split(/:/, $ENV{PATH} // ''), '/usr/bin';
plan skip_all => 'chromium is not installed (Debian package chromium; scripts/install-deps.sh installs it)'
  unless defined $chromium;

my $node = new_node('console_browser', qq{
logagg.dispatch_workers = 1
logagg.rule_eval_interval = '200ms'
});
start_with_extension($node);
my $rport = $node->{reader_port};
ok(defined $rport, 'the node has a reader port') or BAIL_OUT('no logagg.reader_port');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my %sources = map { $_ => sql("SELECT logagg.create_source('$_')") } qw(service-a service-a2 service-b);
my $reader = sql(q{SELECT logagg.create_reader_token('console-a', 'service-a*')});
my $revoked = sql(q{SELECT logagg.create_reader_token('console-old', 'service-a*')});
sql(q{SELECT logagg.revoke_reader_token('console-old')});
# Records of severity high or worse are sent to a webhook on loopback:
# the deliveries fill the alerts page's history (its secret must never
# show).
my $rcv = AlertReceivers::http_receiver($node);
my $secret = 'whsec-console-test-secret';
sql(qq{SET log_statement = 'none';
SELECT logagg.add_destination('console-hook', 'webhook',
  jsonb_build_object('url', '$rcv->{url}/alerts', 'secret', '$secret'));
SELECT logagg.add_route('console-hook', 'high');});
# Any record of severity high or worse makes these fire at the next
# evaluation: one per service group.
sql(q{SELECT logagg.add_alert_rule('console-a-high', '{"source": "service-a*", "min_severity": "high"}', '10 min', 0,
                                   severity => 'critical')});
sql(q{SELECT logagg.add_alert_rule('console-b-high', '{"source": "service-b", "min_severity": "high"}', '10 min', 0)});

# the reader worker serves the console once it listens
ok( poll_until(
		sub {
			my $code = '';
			run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', "http://127.0.0.1:$rport/" ],
				'>', \$code, '2>', \my $e, timeout(10));
			return $code eq '200';
		},
		60),
	'the reader worker serves the console at /');

my $shots = "$PostgreSQL::Test::Utils::log_path/console";
my $config = encode_json({
	chromium => $chromium,
	console => "http://127.0.0.1:$rport",
	ingest => "http://127.0.0.1:$node->{logagg_port}",
	reader_token => $reader,
	wrong_token => $revoked,
	sources => \%sources,
	screenshots => $shots,
	firing_rule => 'console-a-high',
	hidden_rule => 'console-b-high',
	secret => $secret,
	connstr => $node->connstr('postgres'),
	revoke_sql => q{SELECT logagg.revoke_reader_token('console-a')},
});
my ($out, $err) = ('', '');
my $ran = run([ 'node', src_dir() . '/test/clients/console_browser.js' ],
	'<', \$config, '>', \$out, '2>', \$err, timeout(240));
diag("console_browser.js stderr: $err") if $err ne '';

my %values;
my $done = 0;
for my $line (split /\n/, $out)
{
	my $o = eval { decode_json($line) };
	if (!$o) { diag("console_browser.js: $line"); next; }
	if (exists $o->{check})
	{
		ok($o->{ok}, $o->{check})
		  or diag('detail: ' . JSON::PP->new->canonical->encode([ $o->{detail} ]));
	}
	elsif (exists $o->{value}) { $values{ $o->{value} } = $o->{data}; }
	elsif ($o->{done}) { $done = 1; }
}
ok($ran && $done, 'the browser went through every step');

# What the browser showed, against SQL.
my $expect_ids = sql(q{SELECT coalesce(string_agg(id::text, ',' ORDER BY ts DESC, id DESC), '')
                       FROM logagg.logs WHERE source LIKE 'service-a%' AND message ILIKE '%shared-marker%'});
is(join(',', @{ $values{search_shared_marker_ids} // [] }), $expect_ids,
	'search: the records of service-a* with the text, newest first, as in SQL');
isnt($expect_ids, '', 'there were such records');
is(sql(q{SELECT count(*) FROM logagg.logs WHERE source = 'service-b' AND message LIKE '%shared-marker%'}),
	'1', 'service-b has a record with the same text, which the search did not show');

my %sev = map { split /\|/ } split /\n/,
  sql(q{SELECT s.sev || '|' || count(l.id) FROM unnest(enum_range(NULL::logagg.severity)) AS s(sev)
        LEFT JOIN logagg.logs l ON l.severity = s.sev AND l.source LIKE 'service-a%' GROUP BY s.sev});
for my $range ('1h', '1d')
{
	my $h = $values{"histogram_$range"} // {};
	is($h->{range}, $range, "histogram $range shown") or next;
	is($h->{error}, '', "histogram $range: no error");
	is("$h->{critical}/$h->{high}/$h->{low}", "$sev{critical}/$sev{high}/$sev{low}",
		"histogram $range: records per severity of service-a* as in SQL (critical/high/low)");
	# each bucket the table lists, counted again by SQL over [t, t + bucket)
	my @shown = map { "$_->{t} " . join('/', @{ $_->{counts} }) } @{ $h->{buckets} // [] };
	my @sql = map {
		my $t = $_->{t};
		sql(qq{SELECT '$t ' || count(*) FILTER (WHERE severity = 'critical') || '/'
		         || count(*) FILTER (WHERE severity = 'high') || '/' || count(*) FILTER (WHERE severity = 'low')
		       FROM logagg.logs WHERE source LIKE 'service-a%'
		         AND ts >= '$t' AND ts < timestamptz '$t' + interval '$h->{bucket_seconds} s'});
	} @{ $h->{buckets} // [] };
	ok(@shown > 0, "histogram $range: the table lists the non-empty buckets");
	is(join(', ', @shown), join(', ', @sql), "histogram $range: each bucket's counts as in SQL");
}
cmp_ok(sql(q{SELECT count(*) FROM logagg.logs WHERE source = 'service-b'}), '>', 0,
	'service-b has records, which the histogram did not count');

is(sql(q{SELECT string_agg(rule || ' ' || (labels->>'source'), ',' ORDER BY rule) FROM logagg.firing_alerts}),
	'console-a-high service-a,console-b-high service-b',
	'both rules fire in SQL; the console showed only the service-a one');

ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM logagg.alert_log WHERE source = 'service-b'}),
	'service-b\'s alerts were delivered too, and not listed by the console');

for my $view (qw(signin-refused tail search histogram alerts status))
{
	ok(-s "$shots/$view.png", "screenshot of $view kept in $shots");
}

$node->stop;
done_testing();
