# 508_alerts_alertmanager.pl -- the "alertmanager" destination against the
# real Prometheus Alertmanager from Debian (prometheus-alertmanager),
# started here with a configuration that forwards to the recording
# webhook receiver.  A rule alert and a record alert reach Alertmanager,
# which delivers them with their labels; when the rule alert resolves,
# Alertmanager sees it resolve and sends the resolved notification.
use strict;
use warnings;
use JSON::PP;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $am_bin = '/usr/bin/prometheus-alertmanager';
plan skip_all => 'prometheus-alertmanager is not installed' unless -x $am_bin;

my $node = new_node('alerts_alertmanager', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);

# Alertmanager, forwarding everything to the receiver at once
my $am_port = PostgreSQL::Test::Cluster::get_free_port();
my $am_dir = "$PostgreSQL::Test::Utils::tmp_check/alertmanager";
mkdir $am_dir;
open(my $fh, '>', "$am_dir/am.yml") or die;
print $fh <<"EOT";
route:
  receiver: hook
  group_by: ['alertname', 'source']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: '$rcv->{url}/am'
        send_resolved: true
EOT
close $fh;
my $am = IPC::Run::start([ $am_bin, "--config.file=$am_dir/am.yml", "--storage.path=$am_dir/data",
		"--web.listen-address=127.0.0.1:$am_port", '--cluster.listen-address=' ],
	'>', "$am_dir/am.log", '2>&1');
my $http = HTTP::Tiny->new(timeout => 5);
ok(poll_until(sub { $http->get("http://127.0.0.1:$am_port/-/ready")->{success} }, 60), 'Alertmanager is ready');

$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('am', 'alertmanager', '{"url": "http://127.0.0.1:$am_port"}');
SELECT logagg.add_route('am', 'high', NULL, '1 min');
SELECT logagg.add_alert_rule('checkout-errors', '{"source": "checkout", "level": "error"}', '4 s', 1,
                             group_by => ARRAY['source', 'attrs.region']);
});
my ($ret, $o, $e) = $node->psql('postgres', q{SELECT logagg.add_destination('x', 'alertmanager', '{"url": "http://a", "token": "t"}')});
like($e, qr/unknown key "token" in alertmanager destination config/, 'config keys are checked');

# AM's webhook notifications: [status, alert] pairs
sub am_alerts
{
	return map {
		my $n = eval { JSON::PP->new->decode($_->{body}) } // {};
		map { [ $_->{status}, $_ ] } @{ $n->{alerts} // [] }
	} grep { $_->{path} eq '/am' } AlertReceivers::records($rcv);
}

$node->safe_psql('postgres', q{SELECT logagg.ingest('[
	{"source": "checkout", "level": "error", "message": "card declined", "region": "eu"},
	{"source": "checkout", "level": "error", "message": "card declined", "region": "eu"},
	{"source": "payments", "status": 503, "message": "503 upstream gone"}]')});

ok(poll_until(sub { grep { $_->[0] eq 'firing' && $_->[1]{labels}{alertname} eq 'checkout-errors' } am_alerts() }, 60),
	'Alertmanager delivered the rule alert');
my ($f) = grep { $_->[0] eq 'firing' && $_->[1]{labels}{alertname} eq 'checkout-errors' } am_alerts();
my $l = $f ? $f->[1]{labels} : {};
is($l->{source}, 'checkout', 'label source intact');
is($l->{attrs_region}, 'eu', 'group label attrs.region intact (as attrs_region)');
is($l->{severity}, 'high', 'label severity');
like($f ? $f->[1]{annotations}{summary} : '', qr/checkout-errors firing: count 2/, 'annotation summary');
like($f ? $f->[1]{generatorURL} : '', qr{^logagg:/alerts/\d+$}, 'generatorURL');

ok(poll_until(sub { grep { $_->[1]{labels}{alertname} eq 'logagg' && ($_->[1]{labels}{source} // '') eq 'payments' } am_alerts() }, 60),
	'Alertmanager delivered the record alert');
my ($r) = grep { $_->[1]{labels}{alertname} eq 'logagg' && ($_->[1]{labels}{source} // '') eq 'payments' } am_alerts();
is($r ? $r->[1]{labels}{status} : '', '503', 'record alert label status');
like($r ? $r->[1]{labels}{fingerprint} : '', qr/^[0-9a-f]{16}$/, 'record alert label fingerprint');

ok(poll_until(sub { grep { $_->[0] eq 'resolved' && $_->[1]{labels}{alertname} eq 'checkout-errors' } am_alerts() }, 60),
	'Alertmanager saw the rule alert resolve and sent the resolved notification');
my ($res) = grep { $_->[0] eq 'resolved' && $_->[1]{labels}{alertname} eq 'checkout-errors' } am_alerts();
like($res ? $res->[1]{endsAt} : '', qr/^\d{4}-/, 'with endsAt');

$am->kill_kill;
$node->stop;
done_testing();
