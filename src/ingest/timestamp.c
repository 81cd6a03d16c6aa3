/*-------------------------------------------------------------------------
 *
 * timestamp.c
 *		The ingest protocol's timestamps: RFC 3339 text (a strict, fast parser
 *		for what loggers write) and epoch times in seconds, milliseconds,
 *		microseconds or nanoseconds, told apart by magnitude.
 *
 * Neither raises an error for any input: false means "not a timestamp",
 * and the record is rejected with the ts field's reason.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/datetime.h"

#include "ingest/parse_int.h"

static bool
digits(const char *s, int n, int *out)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/*
 * RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM).  A space may
 * stand for the T, a comma for the point (Python's logging), the zone may
 * be +HHMM, and a bare date-time without zone is taken as UTC (all common
 * in practice).  Parsed by hand, not with timestamptz_in,
 * because that one raises errors and depends on DateStyle and TimeZone.
 */
bool
ingest_parse_timestamp(const char *s, int len, TimestampTz *result)
{
	int			year,
				mon,
				day,
				hour,
				min,
				sec;
	int64		usec = 0;
	int			offset_secs = 0;
	int			i;
	int			date;

	if (len < 19 ||
		!digits(s, 4, &year) || s[4] != '-' ||
		!digits(s + 5, 2, &mon) || s[7] != '-' ||
		!digits(s + 8, 2, &day) ||
		(s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
		!digits(s + 11, 2, &hour) || s[13] != ':' ||
		!digits(s + 14, 2, &min) || s[16] != ':' ||
		!digits(s + 17, 2, &sec))
		return false;
	i = 19;
	if (i < len && (s[i] == '.' || s[i] == ','))
	{
		int64		scale = 100000;

		i++;
		if (i >= len || s[i] < '0' || s[i] > '9')
			return false;
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		{
			usec += (s[i] - '0') * scale;
			scale /= 10;
		}
	}
	if (i < len)
	{
		int			oh,
					om;

		if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len)
			i++;
		else if ((s[i] == '+' || s[i] == '-') &&
				 ((i + 6 == len && s[i + 3] == ':' && digits(s + i + 4, 2, &om)) ||
				  (i + 5 == len && digits(s + i + 3, 2, &om))) &&
				 digits(s + i + 1, 2, &oh) && oh < 24 && om < 60)
		{
			offset_secs = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
			i = len;
		}
		else
			return false;
	}
	if (year < 1 || mon < 1 || mon > 12 || day < 1 ||
		day > day_tab[isleap(year)][mon - 1] ||
		hour > 23 || min > 59 || sec > 60)
		return false;
	if (sec == 60)				/* leap second: the last moment of the minute */
	{
		sec = 59;
		usec = 999999;
	}
	date = date2j(year, mon, day) - POSTGRES_EPOCH_JDATE;
	*result = ((int64) date * SECS_PER_DAY + hour * 3600 + min * 60 + sec - offset_secs)
		* USECS_PER_SEC + usec;
	return true;
}

/*
 * Thresholds that tell the unit of an epoch time by its magnitude (of its
 * integer part): below 1e11 it is seconds (1e11 s is in the year 5138),
 * below 1e14 milliseconds (1e11 ms is in 1973), below 1e17 microseconds,
 * else nanoseconds.  So every time from 1973 to 5138 is read right in any
 * of the four units, and epoch milliseconds -- the protocol's own unit --
 * are read as before.  docs/protocol.md documents them.
 */
#define EPOCH_MAX_SECONDS	INT64CONST(100000000000)
#define EPOCH_MAX_MILLIS	INT64CONST(100000000000000)
#define EPOCH_MAX_MICROS	INT64CONST(100000000000000000)

/* Microseconds since the Unix epoch to a timestamp, in years 1 .. 9999. */
static bool
unix_usecs_to_timestamp(int64 us, TimestampTz *result)
{
	if (us < INT64CONST(-62135596800000000) || us > INT64CONST(253402300799999999))
		return false;
	*result = us - ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
	return true;
}

/* An epoch time with an exponent (rare): through a double. */
static bool
epoch_double_to_timestamp(const char *token, TimestampTz *result)
{
	char	   *end;
	double		v = strtod(token, &end);
	double		a = fabs(v);
	double		scale;

	if (*end != '\0' || isnan(v) || a >= 1e20)
		return false;
	scale = a < (double) EPOCH_MAX_SECONDS ? 1e6 : a < (double) EPOCH_MAX_MILLIS ? 1e3 :
		a < (double) EPOCH_MAX_MICROS ? 1.0 : 1e-3;
	return unix_usecs_to_timestamp((int64) llround(v * scale), result);
}

/*
 * An epoch time (a JSON number, or the text of one) to a timestamp: its
 * unit told by magnitude (see EPOCH_MAX_SECONDS), a fraction allowed
 * (Fluent Bit's 1764688200.123456), rounded to the microsecond.  Decimal
 * digits are shifted exactly, without a double, so that 19-digit
 * nanoseconds and 16-digit microseconds keep every digit.
 */
bool
ingest_epoch_to_timestamp(const char *token, TimestampTz *result)
{
	const char *p = token;
	bool		neg = false;
	uint64		ip = 0;
	int			ndig = 0;
	const char *frac = "";
	int			nfrac = 0;
	int			shift;
	int64		us;

	if (*p == '-')
	{
		neg = true;
		p++;
	}
	for (; IS_DIGIT(*p); p++)
	{
		if (++ndig > 19)
			return false;
		ip = ip * 10 + (*p - '0');
	}
	if (ndig == 0)
		return false;
	if (*p == '.')
	{
		frac = ++p;
		while (IS_DIGIT(*p))
			p++;
		nfrac = p - frac;
		if (nfrac == 0)
			return false;
	}
	if (*p == 'e' || *p == 'E')
		return epoch_double_to_timestamp(token, result);
	if (*p != '\0')
		return false;

	/* digits to move the point to the right to get microseconds */
	shift = ip < (uint64) EPOCH_MAX_SECONDS ? 6 : ip < (uint64) EPOCH_MAX_MILLIS ? 3 :
		ip < (uint64) EPOCH_MAX_MICROS ? 0 : -3;
	if (shift >= 0)
	{
		us = (int64) ip;
		for (int i = 0; i < shift; i++)
			us = us * 10 + (i < nfrac ? frac[i] - '0' : 0);
		if (shift < nfrac && frac[shift] >= '5')
			us++;
	}
	else
		us = (int64) (ip / 1000) + (ip % 1000 >= 500 ? 1 : 0);
	return unix_usecs_to_timestamp(neg ? -us : us, result);
}
