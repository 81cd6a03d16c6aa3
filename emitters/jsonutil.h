/*-------------------------------------------------------------------------
 *
 * jsonutil.h
 *	  Minimal JSON helpers: string escaping and a validating scanner for
 *	  one object that reports its top-level members.
 *
 * The emitter needs no JSON tree: it checks --stdin lines, finds a few
 * integer fields in server messages, and escapes text.  tools/logagg-tail
 * builds this file too: it reads a few members of each record it renders.
 *
 *-------------------------------------------------------------------------
 */
#ifndef JSONUTIL_H
#define JSONUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Growable byte buffer */
typedef struct StrBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} StrBuf;

extern void strbuf_reserve(StrBuf *sb, size_t more);
extern void strbuf_append(StrBuf *sb, const char *s, size_t n);
extern void strbuf_free(StrBuf *sb);
extern void strbuf_append_urlencoded(StrBuf *sb, const char *s);

/* Append s as a quoted JSON string; invalid UTF-8 becomes U+FFFD. */
extern void json_append_string(StrBuf *sb, const char *s, size_t n);

/*
 * Called for each top-level member: key (raw, between the quotes, escapes
 * not decoded), member_start = offset of the key's opening quote,
 * value/value_len = the value's text.  Offsets are relative to the scanned
 * text.
 */
typedef void (*JsonMemberCb) (void *arg, const char *key, size_t keylen,
							  size_t member_start,
							  const char *value, size_t value_len);

/*
 * Scan one JSON object starting at p (leading whitespace allowed).
 * Returns the number of bytes consumed up to and including the closing '}',
 * or -1 when the text is not a valid object.  cb may be NULL.
 */
extern long json_scan_object(const char *p, size_t len,
							 JsonMemberCb cb, void *arg);

/*
 * Decode a JSON string value's text (with its quotes) into out as UTF-8;
 * lone surrogates become U+FFFD.  False when it is not a valid string.
 * out is appended to, not reset.
 */
extern bool json_decode_string(const char *v, size_t len, StrBuf *out);

/* Parse a JSON integer value text; false if it isn't one. */
extern bool json_value_int64(const char *v, size_t len, int64_t *out);

#endif							/* JSONUTIL_H */
