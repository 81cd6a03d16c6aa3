/*-------------------------------------------------------------------------
 *
 * timestamp.c
 *		The ingest protocol's timestamps: RFC 3339 text (a strict, fast parser
 *		for what loggers write) and epoch milliseconds.
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
 * stand for the T, and a bare date-time without zone is taken as UTC
 * (both are common in practice).  Parsed by hand, not with timestamptz_in,
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
	if (i < len && s[i] == '.')
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
		else if ((s[i] == '+' || s[i] == '-') && i + 6 == len &&
				 digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
				 digits(s + i + 4, 2, &om) && oh < 24 && om < 60)
		{
			offset_secs = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
			i += 6;
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

/* Epoch milliseconds (a JSON number) to a timestamp. */
bool
ingest_epoch_ms_to_timestamp(const char *token, TimestampTz *result)
{
	char	   *end;
	double		ms = strtod(token, &end);

	/* year 1 .. 9999 */
	if (*end != '\0' || isnan(ms) || ms < -62135596800000.0 || ms > 253402300799000.0)
		return false;
	*result = (TimestampTz) llround(ms * 1000.0) -
		((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
	return true;
}

