# 425_ingest_otlp_json_reader.pl -- unusual but valid OTLP JSON, and JSON
# the door refuses, on POST /v1/logs: what is stored (every mapped field
# and attrs) or the exact reason given.  The corners where a reader of
# the OTLP JSON encoding could differ: AnyValue bodies of every kind
# (kvlistValue, arrayValue, bytesValue, intValue as a number and as a
# string, doubles, NaN, bools, the profiles-only string index, empty),
# \u escapes (non-ASCII, surrogate pairs, escaped field names) and what
# PostgreSQL's JSON parser refuses in them (lone surrogates, \u0000),
# fields in any order (a key after its value, the resource after its
# records), fields given twice (the last counts, repeated ones add up,
# null is absent), snake_case and mixed spellings, enum names, unknown
# fields at every level, the status attribute among several of its names,
# nesting at and past the limits, values of the wrong type, and a syntax
# error after a value of the wrong type (the syntax error is reported).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use LogaggTest;

my $node = new_node('ingest_otlp_json', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-otlp-json')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->utf8->canonical;

sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $now_s = sql("SELECT extract(epoch FROM date_trunc('second', now()))::bigint");
my $now_ns = $now_s * 1000000000;

sub post
{
	my ($body) = @_;
	return $http->request('POST', "$url/v1/logs",
		{ headers => { 'Content-Type' => 'application/json', Authorization => "Bearer $token" }, content => $body });
}

# a request of one resource and scope around the records' JSON texts
sub req { return '{"resourceLogs":[{"scopeLogs":[{"logRecords":[' . join(',', @_) . ']}]}]}'; }

# what one stored record holds: the row whose message is MSG (or WHERE)
sub row
{
	my ($where) = @_;
	return sql(qq{SELECT coalesce(level, '-') || '|' || coalesce(message, '-') || '|' || coalesce(status::text, '-') || '|'
		|| coalesce(trace_id, '-') || '|' || coalesce(span_id, '-') || '|' || coalesce(attrs::text, '-')
		FROM logagg.logs WHERE $where});
}

# ---- AnyValue bodies of every kind; each record's attrs tell them apart ----
my @bodies = (
	[ 'kvlist', '{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}},{"key":"b","value":{"arrayValue":{"values":[{"boolValue":true},{},{"doubleValue":0.1}]}}},{"key":"c","value":{"kvlistValue":{}}}]}}',
		'-|{"a":1,"b":[true,null,0.1],"c":{}}|-|-|-|{"case": "kvlist"}' ],
	[ 'array', '{"arrayValue":{"values":[{"stringValue":"x"},{"doubleValue":"NaN"},{"doubleValue":"-Infinity"},{"intValue":-9007199254740993},{"arrayValue":{}}]}}',
		'-|["x","NaN","-Infinity",-9007199254740993,[]]|-|-|-|{"case": "array"}' ],
	[ 'bytes', '{"bytesValue":"aGVsbG8="}', '-|"aGVsbG8="|-|-|-|{"case": "bytes"}' ],
	[ 'int number', '{"intValue":42}', '-|42|-|-|-|{"case": "int number"}' ],
	[ 'int string', '{"intValue":"-7"}', '-|-7|-|-|-|{"case": "int string"}' ],
	[ 'double', '{"doubleValue":1e3}', '-|1000|-|-|-|{"case": "double"}' ],
	[ 'double NaN', '{"doubleValue":"NaN"}', '-|"NaN"|-|-|-|{"case": "double NaN"}' ],
	[ 'bool', '{"boolValue":false}', '-|false|-|-|-|{"case": "bool"}' ],
	[ 'strindex', '{"stringValueStrindex":3}', '-|null|-|-|-|{"case": "strindex"}' ],
	[ 'empty', '{}', '-|-|-|-|-|{"case": "empty"}' ],
	[ 'last counts', '{"stringValue":"first","intValue":"5"}', '-|5|-|-|-|{"case": "last counts"}' ],
	[ 'null is absent', '{"stringValue":"kept","kvlistValue":null}', '-|kept|-|-|-|{"case": "null is absent"}' ],
	[ 'escapes', '{"stringValue":"caf\u00e9 \ud83d\ude00 \"q\" \/ \\\\ tab\t."}',
		qq(-|caf\x{e9} \x{1f600} "q" / \\ tab\t.|-|-|-|{"case": "escapes"}) ],
);
my $ts = $now_ns + 1000;
my $r = post(req(map { qq({"timeUnixNano":"$ts","body":$_->[1],"attributes":[{"key":"case","value":{"stringValue":"$_->[0]"}}]}) } @bodies));
is($r->{status}, 200, 'AnyValue bodies of every kind: 200');
is($r->{content}, '{}', '... nothing rejected');
for my $b (@bodies)
{
	my $got = row("attrs->>'case' = '$b->[0]'");
	utf8::decode($got);
	is($got, $b->[2], "body $b->[0]");
}

# ---- attributes: escapes, order, duplicates, status ----
my @recs = (
	# escaped names and values (attrs then go through jsonb_in), a key after its value, no key, no value
	[ 'attrs', '"body":{"stringValue":"attrs"},"attributes":[{"key":"k\u00e9\n","value":{"stringValue":"v\u00e9\"\t"}},{"value":{"intValue":"2"},"key":"late"},{"value":{"boolValue":true}},{"key":"novalue"},{"key":"twice","value":{"stringValue":"one"},"value":{"stringValue":"two"}},{"key":"k1","key":"k2","value":{"intValue":3}},{"key":"w","value":{"stringValue": "spaced" }},{"key":"d","value":{"doubleValue":-0.5}}]',
		qq(-|attrs|-|-|-|{"": true, "d": -0.5, "w": "spaced", "k2": 3, "late": 2, "twice": "two", "k\x{e9}\\n": "v\x{e9}\\"\\t", "novalue": null}) ],
	# the status: http.response.status_code wins over http.status_code; a second one stays in attrs
	[ 'status', '"body":{"stringValue":"status"},"attributes":[{"key":"http.status_code","value":{"intValue":"404"}},{"key":"http.response.status_code","value":{"stringValue":"503"}},{"key":"http.response.status_code","value":{"intValue":"200"}}]',
		'-|status|503|-|-|{"http.status_code": 404, "http.response.status_code": 200}' ],
	[ 'status old name', '"body":{"stringValue":"status old name"},"attributes":[{"key":"a","value":{"intValue":"1"}},{"key":"http.status_code","value":{"intValue":"418"}}],"attributes":[{"key":"b","value":{"intValue":"2"}}]',
		'-|status old name|418|-|-|{"a": 1, "b": 2}' ],
	[ 'status first', '"body":{"stringValue":"status first"},"attributes":[{"key":"http.response.status_code","value":{"intValue":"201"}},{"key":"z","value":{}}]',
		'-|status first|201|-|-|{"z": null}' ],
	# snake_case and mixed spellings, an enum by name, ids in upper case, event.name
	[ 'names', '"time_unix_nano":' . ($now_ns + 2000) . ',"severity_number":"SEVERITY_NUMBER_WARN","string_value":1,"body":{"string_value":"names"},"trace_id":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","event_name":"ev","flags":1,"droppedAttributesCount":"3"',
		'warn|names|-|5b8efff798038103d269b633813fc60c|eee19b7ec3c1b174|{"event.name": "ev"}' ],
	[ 'mixed', '"timeUnix_nano":"' . ($now_ns + 3000) . '","severityText":"Error","severityText":null,"body":{"stringValue":"mixed"},"traceId":"","spanId":"ab","TimeUnixNano":"x"',
		'error|mixed|-|-|ab|-' ],
	[ 'observed', '"observedTimeUnixNano":' . ($now_ns + 4000) . ',"severityNumber":21,"body":{"stringValue":"observed"},"unknown":{"deep":[[[[{"x":[1,2,{"y":null}]}]]]]},"eventName":""',
		'fatal|observed|-|-|-|-' ],
	[ 'bad number', '"severityNumber":99,"body":{"stringValue":"bad number"}', undef ],
);
$r = post('{"resourceLogs":[{"scopeLogs":[{"logRecords":[' . join(',', map { "{$_->[1]}" } @recs) . '],"scope":{"name":"s1","version":"","attributes":[{"key":"sa","value":{"intValue":"1"}}]}}],'
	. '"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"first"}}]},"resource":{"attributes":[{"key":"r","value":{"stringValue":"x"}}],"attributes":[{"key":"service.name","value":{"intValue":"1"}}]},"futureField":[1,{"a":[]}]}],"extra":null}');
is($r->{status}, 200, 'attributes, names and orders: 200');
my $resp = eval { $json->decode($r->{content}) } // {};
is($resp->{partialSuccess}{rejectedLogRecords}, '1', 'one record rejected');
like($resp->{partialSuccess}{errorMessage} // '', qr/severity_number must be an integer from 1 to 24/, '... with its reason');
is(sql(q{SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'severity_number must%' AND raw = '{"severityNumber":99,"body":{"stringValue":"bad number"}}'}),
	'1', 'the rejected record keeps its own text');
for my $c (grep { defined $_->[2] } @recs)
{
	# resource and scope attrs are the same for all: the resource read last, after the records
	my $got = row("message = '$c->[0]'");
	utf8::decode($got);
	my ($want_head, $want_attrs) = $c->[2] =~ /^(.*)\|([^|]*)$/;
	my ($head) = $got =~ /^(.*)\|[^|]*$/;
	is($head, $want_head, "record $c->[0]");
	my %a = $want_attrs eq '-' ? () : %{ JSON::PP->new->decode($want_attrs) };
	$a{r} = 'x';
	$a{'service.name'} = 1;
	$a{sa} = 1;
	$a{'otel.scope.name'} = 's1';
	my $a = JSON::PP->new->canonical->encode(\%a);
	$a =~ s/'/''/g;
	is(sql("SELECT attrs = '$a'::jsonb FROM logagg.logs WHERE message = '$c->[0]'"), 't',
		"record $c->[0]: attrs (the resource's, the scope's, its own)") or diag($got);
}
is(sql("SELECT string_agg(DISTINCT source, ',') FROM logagg.logs WHERE attrs->>'otel.scope.name' = 's1'"), 'svc-otlp-json',
	'the token fixes the source');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'observed' AND ts = to_timestamp($now_s) + interval '4 microseconds'"),
	'1', 'observedTimeUnixNano gives the time when timeUnixNano is absent');

# ---- refused bodies: the exact reason, in the reply and in logagg.rejected ----
my $kv_deep = '{"stringValue":"leaf"}';
$kv_deep = qq({"kvlistValue":{"values":[{"key":"k","value":$kv_deep}]}}) for 1 .. 33;
# 100,000 levels in an unknown field: more than pg_parse_json's recursion
# may take (stack depth limit), refused before any parser recurses
my $json_deep = ('[' x 100000) . (']' x 100000);
my @refused = (
	[ 'messages nested too deeply', req(qq({"body":$kv_deep})),
		'the body is not an OTLP JSON ExportLogsServiceRequest: the body is nested too deeply' ],
	[ 'lone surrogate', req('{"body":{"stringValue":"a\ud800b"}}'),
		'the body is not valid JSON: Unicode low surrogate must follow a high surrogate.' ],
	[ 'lone low surrogate in an unknown field', req('{"x":"\udc00"}'),
		'the body is not valid JSON: Unicode low surrogate must follow a high surrogate.' ],
	[ 'escaped NUL in a key', req('{"a\u0000":1}'),
		'the body is not valid JSON: \u0000 cannot be converted to text.' ],
	[ 'int with a fraction', req('{"body":{"intValue":"1.5"}}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "int_value" has a value of the wrong type' ],
	[ 'attribute int with a fraction', req('{"attributes":[{"key":"n","value":{"intValue":"1.5"}}]}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "int_value" has a value of the wrong type' ],
	[ 'bool as a string', req('{"body":{"boolValue":"true"}}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "bool_value" has a value of the wrong type' ],
	[ 'negative flags', req('{"flags":-1}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "flags" has a value of the wrong type' ],
	[ 'double out of range', req('{"body":{"doubleValue":1e400}}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "double_value" has a value of the wrong type' ],
	[ 'bad base64', req('{"body":{"bytesValue":"!!"}}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "bytes_value" has a value of the wrong type' ],
	[ 'odd hex id', req('{"spanId":"abc"}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "span_id" must be a hex string' ],
	[ 'records not an array', '{"resourceLogs":[{"scopeLogs":[{"logRecords":{}}]}]}',
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "log_records" must be an array' ],
	[ 'body an array', req('{"body":[]}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "body" must not be an array' ],
	[ 'time an object', req('{"timeUnixNano":{}}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "time_unix_nano" must not be an object' ],
	[ 'attributes a number', req('{"attributes":5}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "attributes" must be an array' ],
	[ 'records of arrays', '{"resourceLogs":[{"scopeLogs":[{"logRecords":[[]]}]}]}',
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "log_records" must not be an array' ],
	[ 'a record that is a string', '{"resourceLogs":[{"scopeLogs":[{"logRecords":["x"]}]}]}',
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "log_records" has a value of the wrong type' ],
	[ 'body a string', req('{"body":"text"}'),
		'the body is not an OTLP JSON ExportLogsServiceRequest: field "body" has a value of the wrong type' ],
	[ 'not an object', '"resourceLogs"',
		'the body is not an OTLP JSON ExportLogsServiceRequest: the body must be a JSON object (an ExportLogsServiceRequest)' ],
	[ 'syntax error after a wrong type', req('{"flags":"x"}') . ' trailing',
		'the body is not valid JSON: Token "trailing" is invalid.' ],
	[ 'truncated', substr(req('{"body":{"stringValue":"cut"}}'), 0, 31),
		'the body is not valid JSON: The input string ended unexpectedly.' ],
	[ 'empty', '', 'the body is not valid JSON: The input string ended unexpectedly.' ],
	[ 'bad number', req('{"timeUnixNano":01}'), 'the body is not valid JSON: Token "01" is invalid.' ],
	[ 'JSON nested too deeply', req(qq({"unknown":$json_deep})), 'the body is nested too deeply' ],
);
for my $c (@refused)
{
	my ($name, $body, $why) = @$c;
	my $before = sql("SELECT count(*) FROM logagg.rejected");
	$r = post($body);
	is($r->{status}, 400, "$name: 400");
	my $s = eval { $json->decode($r->{content}) } // {};
	is($s->{message}, $why, "$name: the reason");
	is(sql("SELECT count(*) - $before || '|' || max(reason) FILTER (WHERE id = (SELECT max(id) FROM logagg.rejected)) || '|' || max(raw_length) FILTER (WHERE id = (SELECT max(id) FROM logagg.rejected)) FROM logagg.rejected"),
		'1|' . $why . '|' . length($body), "$name: the body in logagg.rejected with the reason");
}
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'cut' OR message LIKE 'a%b'"), '0', 'nothing of those stored');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the worker kept its PID');
$r = post(req('{"body":{"stringValue":"after all"}}'));
is($r->{status}, 200, 'a valid request after them: 200');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'after all'"), '1', '... stored');

done_testing();
