/*-------------------------------------------------------------------------
 *
 * log_redact.c
 *		Keeps logagg's credentials out of the server log.
 *
 * logagg never logs a secret itself, but PostgreSQL does on our behalf:
 * a reload logs 'parameter "logagg.s3_secret_access_key" changed to
 * "..."', and log_statement / log_min_duration_statement / error reports
 * print the text of "ALTER SYSTEM SET logagg.s3_secret_access_key = ..."
 * or "SELECT logagg.add_destination(..., '{"secret": ...}')".  An
 * emit_log_hook, installed in the postmaster when the library is preloaded
 * (and so inherited by every process), rewrites such messages before they
 * are written, and replaces any occurrence of the configured S3 secret.
 *
 * Drivers that use the extended query protocol (libpq's PQexecParams and
 * PQprepare, JDBC, psycopg 3, DBD::Pg...) send the config as a bind
 * parameter: the statement text then has no secret, but PostgreSQL logs
 * the values as 'DETAIL: parameters: $3 = ...' after "execute" and
 * "duration" lines, and as 'CONTEXT: ... parameter $3 = ...' when a value
 * fails to convert.  A config that is not valid JSON fails in the JSON
 * parser before add_destination runs, whose error quotes the input
 * ('CONTEXT: JSON data, line 1: {"secret": ...', 'DETAIL: Token "..." is
 * invalid.').  So whenever the statement being executed (or the one a log
 * line prints) mentions logagg's credentials, the parameter values, JSON
 * excerpts and tokens in DETAIL and CONTEXT are hidden as well.
 *
 * The hook runs inside error reporting: it must not ereport and allocates
 * only in the current (error) memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"

#include "logagg.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

/* Words whose presence means the text may carry a credential. */
static const char *const secret_markers[] = {
	"logagg.s3_secret_access_key",
	"logagg.s3_access_key_id",
	"logagg.metrics_token",
	"add_destination",
	"logagg.destinations",
};

static const char *
find_marker(const char *text)
{
	if (text == NULL)
		return NULL;
	for (int i = 0; i < lengthof(secret_markers); i++)
		if (strstr(text, secret_markers[i]) != NULL)
			return secret_markers[i];
	return NULL;
}

/* Replace every occurrence of secret in *text with asterisks. */
static void
mask_value(char **text, const char *secret)
{
	char	   *p;
	size_t		len = strlen(secret);

	if (*text == NULL || len < 4)
		return;
	while ((p = strstr(*text, secret)) != NULL)
		memset(p, '*', len);
}

/*
 * Does this message print a value or a statement that may hold a secret?
 * Only those are rewritten: a message that merely names a parameter (say,
 * "must be superuser to examine logagg.s3_secret_access_key") stays as it
 * is, since the hook's changes reach the client too.
 */
static bool
prints_value_or_statement(const char *text)
{
	return strstr(text, "\" changed to \"") != NULL ||
		strncmp(text, "statement: ", 11) == 0 ||
		strncmp(text, "duration: ", 10) == 0 ||
		strncmp(text, "execute ", 8) == 0 ||
		strncmp(text, "parameters: ", 12) == 0;
}

static char *
redact(char *text)
{
	const char *marker = find_marker(text);
	const char *changed;

	if (marker == NULL || !prints_value_or_statement(text))
		return text;
	/* 'parameter "X" changed to "VALUE"' keeps the name, drops the value */
	changed = strstr(text, "\" changed to \"");
	if (changed != NULL)
		return psprintf("%.*s\" changed (value hidden by logagg)",
						(int) (changed - text), text);
	return psprintf("[statement mentioning %s hidden by logagg: it may carry credentials]", marker);
}

/* Does this CONTEXT or DETAIL line quote input values? */
static bool
quotes_input(const char *line, int len)
{
	static const char *const quoting[] = {
		"parameters: ",			/* errdetail_params() */
		" parameter $",			/* bind_param_error_callback() */
		"JSON data, line ",		/* json_errcontext() */
		"Token \"",				/* JSON lexer errors */
		"Character with value ",	/* JSON escape errors */
	};

	for (int i = 0; i < lengthof(quoting); i++)
	{
		int			qlen = strlen(quoting[i]);

		for (int j = 0; j + qlen <= len; j++)
			if (memcmp(line + j, quoting[i], qlen) == 0)
				return true;
	}
	return false;
}

/*
 * The text with every line that quotes input replaced by a note; the text
 * itself when no line does.
 */
static char *
hide_quoting_lines(char *text)
{
	StringInfoData buf;
	const char *p = text;
	bool		changed = false;

	if (text == NULL)
		return NULL;
	initStringInfo(&buf);
	while (*p)
	{
		const char *eol = strchr(p, '\n');
		int			len = eol ? (int) (eol - p) : (int) strlen(p);

		if (p != text)
			appendStringInfoChar(&buf, '\n');
		if (quotes_input(p, len))
		{
			appendStringInfoString(&buf, "[input values hidden by logagg: they may carry credentials]");
			changed = true;
		}
		else
			appendBinaryStringInfo(&buf, p, len);
		p = eol ? eol + 1 : p + len;
	}
	if (!changed)
	{
		pfree(buf.data);
		return text;
	}
	return buf.data;
}

static void
logagg_emit_log_hook(ErrorData *edata)
{
	/* the statement running, or the one this line prints, may carry secrets */
	bool		sensitive_statement =
		(debug_query_string != NULL && find_marker(debug_query_string) != NULL) ||
		(edata->message != NULL && find_marker(edata->message) != NULL &&
		 prints_value_or_statement(edata->message));

	if (edata->message)
		edata->message = redact(edata->message);
	if (edata->detail)
		edata->detail = redact(edata->detail);
	if (find_marker(edata->internalquery) != NULL)
		edata->internalquery = NULL;
	if (debug_query_string != NULL && find_marker(debug_query_string) != NULL)
		edata->hide_stmt = true;
	if (sensitive_statement)
	{
		edata->detail = hide_quoting_lines(edata->detail);
		edata->detail_log = hide_quoting_lines(edata->detail_log);
		edata->context = hide_quoting_lines(edata->context);
	}

	if (logagg_s3_secret_access_key != NULL && logagg_s3_secret_access_key[0] != '\0')
	{
		mask_value(&edata->message, logagg_s3_secret_access_key);
		mask_value(&edata->detail, logagg_s3_secret_access_key);
		mask_value(&edata->context, logagg_s3_secret_access_key);
		if (debug_query_string != NULL &&
			strstr(debug_query_string, logagg_s3_secret_access_key) != NULL)
			edata->hide_stmt = true;
	}

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
logagg_install_log_redaction(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = logagg_emit_log_hook;
}
