# 504_alerts_storm_guard.pl -- anyone who can make a monitored site log a
# request path must not be able to page on-call at will.  Two routes (a
# webhook and Slack), max_notifications 10 (the default) per 3 s window:
#   1. 1,000 distinct 404 paths: the path of a client error is masked in
#      the fingerprint, so they are one group: at most 11 notifications
#      per route, counts summing to 1,000;
#   2. 1,000 distinct 503 messages (no digits, nothing masked): 10
#      notifications, then one digest "and 990 more alerts from 990
#      fingerprints" per route; counts summing to 1,000.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_storm_guard');
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "$rcv->{url}/hook"}');
SELECT logagg.add_destination('chat', 'slack', '{"webhook_url": "$rcv->{url}/slack", "allow_insecure": true}');
SELECT logagg.add_route('hook', 'high', NULL, '3 s');
SELECT logagg.add_route('chat', 'high', NULL, '3 s');
});
is($node->safe_psql('postgres', 'SELECT string_agg(max_notifications::text, \',\') FROM logagg.routes'),
	'10,10', 'routes default to max_notifications = 10');

# the notification payloads a route got for one source (digests have none)
sub payloads
{
	my ($path, $code) = @_;
	return grep { $code->($_) } map {
		my $b = eval { JSON::PP->new->decode($_->{body}) } // {};
		$path eq '/slack' ? ($b->{metadata}{event_payload} // {}) : $b
	} grep { $_->{path} eq $path } AlertReceivers::records($rcv);
}

sub word
{
	my ($n) = @_;
	my $w = '';
	for (1 .. 4) { $w .= chr(ord('a') + $n % 26); $n = int($n / 26); }
	return $w;
}

sub ingest_all
{
	my (@recs) = @_;
	my $json = '[' . join(',', @recs) . ']';
	$json =~ s/'/''/g;
	return $node->safe_psql('postgres', "SELECT logagg.ingest('$json')");
}

# --- 1. a scan of 1,000 paths ---
is(ingest_all(map { sprintf('{"source":"scanned","status":404,"message":"GET /%s 404"}', word($_)) } 0 .. 999),
	'1000', '1000 records with distinct 404 paths stored');
for my $path ('/hook', '/slack')
{
	my $sum = 0;
	ok(poll_until(sub {
		$sum = 0;
		$sum += $_->{count} for payloads($path, sub { ($_[0]{source} // '') eq 'scanned' });
		$sum == 1000 }, 30), "$path: counts add up to 1000 ($sum)");
	my @n = payloads($path, sub { ($_[0]{source} // '') eq 'scanned' });
	cmp_ok(scalar(@n), '<=', 11, "$path: " . scalar(@n) . ' notifications for the scan (<= 10 + 1)');
}

# --- 2. 1,000 distinct messages: the storm guard's digest ---
# a fresh storm window for both routes
ok($node->poll_query_until('postgres',
	q{SELECT bool_and(s.window_start + r.group_window < now()) FROM logagg._route_storm s JOIN logagg.routes r ON r.id = s.route_id}),
	'the previous storm window is over');
is(ingest_all(map { sprintf('{"source":"flood","status":503,"message":"upstream failure in handler %s"}', word($_)) } 0 .. 999),
	'1000', '1000 records with distinct messages stored');
for my $path ('/hook', '/slack')
{
	my $sum = 0;
	ok(poll_until(sub {
		$sum = 0;
		$sum += $_->{count} for payloads($path, sub { ($_[0]{source} // '') eq 'flood' || $_[0]{digest} });
		$sum == 1000 }, 30), "$path: counts add up to 1000 with the digest ($sum)");
	my @n = payloads($path, sub { ($_[0]{source} // '') eq 'flood' });
	my @d = payloads($path, sub { $_[0]{digest} });
	is(scalar(@n), 10, "$path: 10 notifications");
	is(scalar(@d), 1, "$path: then one digest");
	is($d[0]{message} // '', 'and 990 more alerts from 990 fingerprints', "$path: the digest says how many");
	is($d[0]{fingerprints}, 990, "$path: digest fingerprints");
}
my ($slack_digest) = grep { $_->{path} eq '/slack' && $_->{body} =~ /"digest"/ } AlertReceivers::records($rcv);
like(JSON::PP->new->decode($slack_digest->{body})->{text} // '', qr/^\[CRITICAL\] and 990 more alerts from 990 fingerprints/,
	'the Slack digest headline');

$node->stop;
done_testing();
