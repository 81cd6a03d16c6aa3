/*-------------------------------------------------------------------------
 *
 * forward.c
 *		Forwarding tokens: the source a record of a forwarding token (a
 *		collector's, carrying many services) is stored under, and why a
 *		record may not take the source it names.
 *
 * A plain token fixes the source of every record it sends.  A forwarding
 * token lets each record name its own, from its first candidate field:
 *
 *	 source (or its alias service)	-- the native field; OTLP and Loki put
 *									   service.name / service_name, job, app
 *									   here, keeping the original in attrs
 *	 service.name					-- a top-level field (ECS, OTel names),
 *									   which stays in attrs too
 *
 * and falls back to the token's own name when it has none.  The name must
 * follow the rules of logagg.create_source and match one of the token's
 * globs (sources.forward_sources), unless it is the token's own name.  A
 * record that breaks them is rejected with the reason.
 *
 * Only forwarders pay for this: one name check and one glob match per
 * record, and a look for service.name in the attrs text of records
 * without a source field.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "ingest/parse_int.h"

#define SERVICE_NAME "\"service.name\""

/*
 * The reason a forwarding token's record may not be stored under NAME
 * (given in FIELD), or NULL.  buf may hold the reason.
 */
static const char *
forward_name_reason(const IngestOrigin *origin, const char *field, const char *name,
					char *buf, int buflen)
{
	if (!logagg_valid_source_name(name))
	{
		snprintf(buf, buflen, "%s must be 1-128 letters, digits, '.', '_' or '-'", field);
		return buf;
	}
	if (origin->forward_sources && strcmp(name, origin->source) != 0 &&
		!logagg_source_pattern_match(origin->forward_sources, name))
	{
		snprintf(buf, buflen, "source \"%s\" is not among the sources this token may write",
				 name);
		return buf;
	}
	return NULL;
}

/* The end of the JSON string whose opening quote is at p (no checks). */
static const char *
string_end(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return end;
}

/* The end of the JSON value at p (attrs text is valid JSON already). */
static const char *
value_end(const char *p, const char *end)
{
	int			depth = 0;

	for (; p < end; p++)
	{
		if (*p == '"')
		{
			p = string_end(p, end) - 1;
			if (depth == 0)
				return p + 1;
		}
		else if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
		{
			if (depth == 0)
				return p;		/* the end of a scalar before it */
			if (--depth == 0)
				return p + 1;
		}
		else if (*p == ',' && depth == 0)
			return p;
	}
	return end;
}

/*
 * The value of the top-level field "service.name" in the attrs text
 * [s, end) (a JSON object, maybe without its closing brace yet): *start
 * and *len give a string's contents; returns false when there is no such
 * field, and sets *is_string to whether its value is a string.  The field
 * name must come unescaped, as every shipper writes it.
 */
static bool
find_service_name(const char *s, const char *end, const char **start, int *len,
				  bool *is_string)
{
	const char *p = s;
	bool		found = false;

	/* cheap test first: most records have no such field */
	if (end - s < (int) strlen(SERVICE_NAME) ||
		memmem(s, end - s, SERVICE_NAME, strlen(SERVICE_NAME)) == NULL)
		return false;
	p = skip_ws((char *) p, (char *) end);
	if (p < end && *p == '{')
		p++;
	for (;;)
	{
		const char *ks,
				   *ke,
				   *ve;

		p = skip_ws((char *) p, (char *) end);
		if (p >= end || *p != '"')
			break;
		ks = p;
		ke = string_end(p, end);
		p = skip_ws((char *) ke, (char *) end);
		if (p >= end || *p != ':')
			break;
		p = skip_ws((char *) p + 1, (char *) end);
		ve = value_end(p, end);
		/* the last one wins, as in the attrs jsonb */
		if (ke - ks == (int) strlen(SERVICE_NAME) && memcmp(ks, SERVICE_NAME, ke - ks) == 0)
		{
			found = true;
			*is_string = *p == '"';
			*start = p + 1;
			*len = *is_string ? (int) (ve - p - 2) : 0;
		}
		p = skip_ws((char *) ve, (char *) end);
		if (p >= end || *p != ',')
			break;
		p++;
	}
	return found;
}

/*
 * The source a forwarding token's record is stored under: *source is set
 * to its candidate (val[F_SOURCE] is checked by the caller, record.c) from
 * service.name, or left NULL (the token's own name).  Returns the reject
 * reason, or NULL.  A name from service.name is copied (scratch memory);
 * the caller puts the kept one in the batch.
 */
const char *
ingest_forward_attr_source(const IngestOrigin *origin, const RecState *st,
						   char **source, char *buf, int buflen)
{
	const char *s;
	int			len;
	const char *start;
	int			vlen;
	bool		is_string;
	char	   *name;

	if (st->attrs_text)
	{
		s = st->attrs_text;
		len = strlen(s);
	}
	else if (st->attrs.len > 0)
	{
		s = st->attrs.data;
		len = st->attrs.len;
	}
	else
		return NULL;
	if (!find_service_name(s, s + len, &start, &vlen, &is_string))
		return NULL;
	if (!is_string || vlen > INGEST_MAX_SOURCE_LEN || memchr(start, '\\', vlen) != NULL)
		return "service.name must be 1-128 letters, digits, '.', '_' or '-'";
	name = pnstrdup(start, vlen);
	*source = name;
	return forward_name_reason(origin, "service.name", name, buf, buflen);
}

/*
 * The reason a forwarding token's record may not take the source it gives
 * in its source field (val[F_SOURCE], of JSON type T), or NULL.
 */
const char *
ingest_forward_check_source(const IngestOrigin *origin, const char *v, JsonTokenType t,
							char *buf, int buflen)
{
	if (t != JSON_TOKEN_STRING)
		return "source must be 1-128 letters, digits, '.', '_' or '-'";
	return forward_name_reason(origin, "source", v, buf, buflen);
}
