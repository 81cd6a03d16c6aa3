# 507_alerts_inhibition.pl -- inhibition with Alertmanager's semantics:
# while the rule alert "db-down" fires for source db, high alerts with the
# same source are not sent (logged as inhibited); a high alert of another
# source, a critical alert of db, and the source alert itself are sent.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_inhibition', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(qq{SELECT logagg.add_destination('hook', 'webhook', '{"url": "$rcv->{url}/hook"}');
       SELECT logagg.add_route('hook', 'high', NULL, '1 min');
       SELECT logagg.add_alert_rule('db-down', '{"source": "db", "message_regex": "connection refused"}',
                                    '1 min', 0, severity => 'critical')});
my $iid = sql(q{SELECT logagg.add_inhibit_rule('["rule=\"db-down\""]', '["severity=\"high\""]', ARRAY['source'])});
like($iid, qr/^\d+$/, 'add_inhibit_rule returns its id');
my ($ret, $o, $e) = $node->psql('postgres', q{SELECT logagg.add_inhibit_rule('["rule=db"]', '["x y"]')});
like($e, qr/invalid route matcher "x y"/, 'bad matchers are refused');

sub sent
{
	my ($text) = @_;
	return scalar grep { (eval { JSON::PP->new->decode($_->{body}) } // {})->{message} =~ /\Q$text\E/ }
	  AlertReceivers::records($rcv);
}

sql(q{SELECT logagg.ingest('{"source": "db", "level": "info", "message": "connection refused"}')});
ok(poll_until(sub { sent('db-down firing') }, 30), 'the source alert (db-down) fires and is sent');

sql(q{SELECT logagg.ingest('[{"source": "db", "status": 401, "message": "i1 denied"},
                             {"source": "web", "status": 401, "message": "i2 denied"},
                             {"source": "db", "status": 500, "message": "i3 boom"}]')});
ok(poll_until(sub { sent('i2 denied') && sent('i3 boom') }, 30),
	'a high alert of another source and a critical alert of db are sent');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM logagg.alert_log WHERE source = 'db' AND outcome = 'silenced' AND error = 'inhibited by inhibit rule $iid'"),
	'the high alert of db is logged as inhibited');
is(sent('i1 denied'), 0, 'and not sent');

# without a firing source, nothing is inhibited
sql(q{SELECT logagg.pause_alert_rule('db-down'); UPDATE logagg.alerts SET state = 'resolved'});
sql(q{SELECT logagg.ingest('{"source": "db", "status": 403, "message": "i4 forbidden"}')});
ok(poll_until(sub { sent('i4 forbidden') }, 30), 'once the source alert no longer fires, targets are sent');

$node->stop;
done_testing();
