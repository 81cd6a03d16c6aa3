# 506_alerts_mute_times.pl -- mute time intervals on routes and silences
# that start in the future.
#   /muted  muted all day, every day (in Europe/Berlin): gets nothing, its
#           alerts are logged as silenced;
#   /other  muted on a weekday that is not today: gets everything;
#   /open   no mute times.
# A silence scheduled to start in 3 s lets an alert through before it
# starts and silences the next one once it has started.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_mute_times');
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
my $u = $rcv->{url};
sub sql { return $node->safe_psql('postgres', $_[0]); }

my %route;
for my $d (qw(muted other open))
{
	sql(qq{SELECT logagg.add_destination('$d', 'webhook', '{"url": "$u/$d"}')});
	$route{$d} = sql(qq{SELECT logagg.add_route('$d', 'high', NULL, '1 min')});
}
sql(qq{SELECT logagg.set_route_mute_times($route{muted},
	'[{"weekdays": ["sunday:saturday"], "times": [{"start_time": "00:00", "end_time": "24:00"}], "location": "Europe/Berlin"}]')});
my $not_today = sql(q{SELECT (ARRAY['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'])
	[(extract(dow FROM now() AT TIME ZONE 'UTC')::int + 3) % 7 + 1]});
sql(qq{SELECT logagg.set_route_mute_times($route{other}, '[{"weekdays": ["$not_today"]}]')});

for my $bad (
	[ q{'[{"weekdays": ["someday"]}]'}, qr/invalid weekday or range "someday"/ ],
	[ q{'[{"weekdays": ["friday:monday"]}]'}, qr/invalid weekday or range "friday:monday"/ ],
	[ q{'[{"times": [{"start_time": "18:00", "end_time": "09:00"}]}]'}, qr/invalid time range/ ],
	[ q{'[{"location": "Mars/Olympus"}]'}, qr/unknown time zone "Mars\/Olympus"/ ],
	[ q{'[{"months": ["may"]}]'}, qr/a mute time interval is an object of weekdays, times and location/ ])
{
	my ($ret, $o, $e) = $node->psql('postgres', "SELECT logagg.set_route_mute_times($route{open}, $bad->[0])");
	like($e, $bad->[1], "refused: $bad->[0]");
}

sub paths_of
{
	my ($tag) = @_;
	my %at;
	for my $r (AlertReceivers::records($rcv))
	{
		my $p = eval { JSON::PP->new->decode($r->{body}) } // {};
		$at{ substr($r->{path}, 1) } = 1 if ($p->{message} // '') eq $tag;
	}
	return join(',', sort keys %at);
}

# --- mute time intervals ---
sql(q{SELECT logagg.ingest('{"source": "svc", "status": 500, "message": "m1 boom"}')});
ok(poll_until(sub { paths_of('m1 boom') eq 'open,other' }, 30), 'sent to /open and /other');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM logagg.alert_log WHERE route_id = $route{muted} AND outcome = 'silenced' AND error LIKE 'muted by the mute_time_intervals of route%'"),
	'the muted route logged it as silenced by its mute times');
is(sql("SELECT count(*) FROM logagg.alert_queue WHERE route_id = $route{muted}"), '0', 'and nothing waits for it');
is(paths_of('m1 boom'), 'open,other', '/muted got nothing');

# --- a silence that starts later ---
my ($ret, $o, $e) = $node->psql('postgres',
	q{SELECT logagg.schedule_silence('later', NULL, now() + interval '1 hour', now() + interval '1 minute', 'x')});
like($e, qr/a silence must end after it starts/, 'a silence ending before it starts is refused');
my $sid = sql(q{SELECT logagg.schedule_silence('later', NULL, now() + interval '3 s', now() + interval '1 hour', 'maintenance')});
sql(q{SELECT logagg.ingest('{"source": "later", "status": 500, "message": "before the silence"}')});
ok(poll_until(sub { paths_of('before the silence') eq 'open,other' }, 30), 'before it starts, alerts are sent');
ok($node->poll_query_until('postgres', "SELECT now() > starts_at FROM logagg.silences WHERE id = $sid"),
	'the silence has started');
sql(q{SELECT logagg.ingest('{"source": "later", "status": 500, "message": "during the silence"}')});
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM logagg.alert_log WHERE source = 'later' AND outcome = 'silenced' AND error = 'silenced by silence $sid'"),
	'once it has started, the alert is silenced on every route');
is(paths_of('during the silence'), '', 'and not sent');

$node->stop;
done_testing();
