# OtlpWire.pm -- a small protobuf wire-format writer for tests: OTLP
# ExportLogsServiceRequest bodies built field by field, so that tests can
# also send what no SDK would (unknown fields, invalid UTF-8, truncation).
package OtlpWire;
use strict;
use warnings;
use Exporter 'import';
our @EXPORT_OK = qw(pb_varint pb_len pb_fixed64 pb_str any_str any_int kv log_record request);

sub pb_varint_raw
{
	my ($v) = @_;
	my $out = '';
	while (1)
	{
		my $b = $v & 0x7f;
		$v >>= 7;
		if ($v) { $out .= chr($b | 0x80); }
		else { $out .= chr($b); last; }
	}
	return $out;
}

# field NUM as a varint, length-delimited bytes, fixed64
sub pb_varint { my ($num, $v) = @_; return pb_varint_raw($num << 3) . pb_varint_raw($v); }
sub pb_len { my ($num, $bytes) = @_; return pb_varint_raw(($num << 3) | 2) . pb_varint_raw(length $bytes) . $bytes; }
sub pb_fixed64 { my ($num, $v) = @_; return pb_varint_raw(($num << 3) | 1) . pack('Q<', $v); }
sub pb_str { my ($num, $s) = @_; utf8::encode($s) if utf8::is_utf8($s); return pb_len($num, $s); }

# AnyValue, KeyValue
sub any_str { return pb_str(1, $_[0]); }
sub any_int { return pb_varint(3, $_[0]); }
sub kv { my ($k, $any) = @_; return pb_str(1, $k) . pb_len(2, $any); }

# LogRecord from a hash: time (ns), severity_number, severity_text, body (AnyValue bytes),
# attrs (list of KeyValue bytes), trace_id / span_id (raw bytes), extra (raw bytes appended)
sub log_record
{
	my (%r) = @_;
	my $b = '';
	$b .= pb_fixed64(1, $r{time}) if defined $r{time};
	$b .= pb_varint(2, $r{severity_number}) if defined $r{severity_number};
	$b .= pb_str(3, $r{severity_text}) if defined $r{severity_text};
	$b .= pb_len(5, $r{body}) if defined $r{body};
	$b .= pb_len(6, $_) for @{ $r{attrs} // [] };
	$b .= pb_len(9, $r{trace_id}) if defined $r{trace_id};
	$b .= pb_len(10, $r{span_id}) if defined $r{span_id};
	$b .= $r{extra} if defined $r{extra};
	return $b;
}

# ExportLogsServiceRequest: one resource (its KeyValues), one scope, records
sub request
{
	my ($resource_kvs, $records, $extra) = @_;
	my $resource = join('', map { pb_len(1, $_) } @$resource_kvs);
	my $scope = pb_len(1, pb_str(1, 'wire-test')) . join('', map { pb_len(2, $_) } @$records);
	my $rl = pb_len(1, $resource) . pb_len(2, $scope) . ($extra // '');
	return pb_len(1, $rl);
}

1;
