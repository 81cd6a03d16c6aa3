/*-------------------------------------------------------------------------
 *
 * decompress.c
 *		Request bodies sent with Content-Encoding: gzip (or x-gzip, or
 *		deflate), decompressed with zlib before any door parses them.
 *
 * The decompressed size is bounded by LIMIT (the server passes
 * logagg.max_message_bytes, the same bound as an uncompressed body):
 * inflating stops as soon as the output would pass it, so a small body
 * that inflates to gigabytes (a "decompression bomb") costs at most LIMIT
 * bytes of memory and is refused.  Output is malloc'd and nothing here
 * raises an error, so it may run anywhere; the server calls it from the
 * main loop, where the body is taken from the queue.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <zlib.h>

#include "ingest/server_int.h"

/* Inflate with zlib's header detection WBITS: gzip (31), zlib (15), raw (-15). */
static int
inflate_bounded(const char *in, size_t inlen, size_t limit, int wbits,
				char **out, size_t *outlen)
{
	z_stream	zs;
	size_t		cap = Min(Max(inlen * 4, (size_t) 4096), limit + 1);
	char	   *buf = malloc(cap);
	int			rc;

	*out = NULL;
	*outlen = 0;
	if (buf == NULL)
		return Z_MEM_ERROR;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, wbits) != Z_OK)
	{
		free(buf);
		return Z_MEM_ERROR;
	}
	zs.next_in = (Bytef *) in;
	zs.avail_in = (uInt) Min(inlen, (size_t) UINT_MAX);
	do
	{
		if (zs.total_out == cap)
		{
			size_t		ncap;
			char	   *p;

			if (cap > limit)
			{
				rc = Z_BUF_ERROR + 1000;	/* more than LIMIT: a bomb */
				break;
			}
			ncap = Min(cap * 2, limit + 1);
			if ((p = realloc(buf, ncap)) == NULL)
			{
				rc = Z_MEM_ERROR;
				break;
			}
			buf = p;
			cap = ncap;
		}
		zs.next_out = (Bytef *) buf + zs.total_out;
		zs.avail_out = (uInt) (cap - zs.total_out);
		rc = inflate(&zs, Z_NO_FLUSH);
		/* a gzip body may hold several members (RFC 1952 2.2): go on */
		if (rc == Z_STREAM_END && wbits == 31 && zs.avail_in > 0)
			rc = inflateReset(&zs);
	} while (rc == Z_OK || (rc == Z_BUF_ERROR && zs.avail_out == 0));
	if (rc == Z_STREAM_END && zs.total_out > limit)
		rc = Z_BUF_ERROR + 1000;
	if (rc == Z_STREAM_END && zs.avail_in > 0)
		rc = Z_DATA_ERROR;		/* bytes after the end of the stream */
	*outlen = zs.total_out;
	inflateEnd(&zs);
	if (rc != Z_STREAM_END)
	{
		free(buf);
		return rc == Z_BUF_ERROR ? Z_DATA_ERROR : rc;	/* truncated */
	}
	*out = buf;
	return Z_STREAM_END;
}

/* The reason of a body that inflates past LIMIT: callers answer it with 413. */
const char *const ingest_decompress_too_large =
"the body decompresses to more than logagg.max_message_bytes";

static bool
decompress(const char *in, size_t inlen, size_t limit, int wbits, const char *what,
		   char **out, size_t *outlen, const char **why)
{
	int			rc = inflate_bounded(in, inlen, limit, wbits, out, outlen);

	*why = NULL;
	if (rc == Z_STREAM_END)
		return true;
	if (rc == Z_BUF_ERROR + 1000)
		*why = ingest_decompress_too_large;
	else if (rc == Z_MEM_ERROR)
		*why = "out of memory while decompressing the body";
	else
		*why = what;
	return false;
}

/*
 * Decompress a gzip body (one or more members, RFC 1952).  On success
 * *out (malloc'd; the caller frees it) and *outlen hold the data, at most
 * LIMIT bytes; on failure *why says why: invalid or truncated gzip, or
 * ingest_decompress_too_large.
 */
bool
ingest_gunzip(const char *in, size_t inlen, size_t limit, char **out, size_t *outlen,
			  const char **why)
{
	return decompress(in, inlen, limit, 31,
					  "the body is not valid gzip (Content-Encoding: gzip), or it is truncated",
					  out, outlen, why);
}

/*
 * Content-Encoding: deflate -- the zlib format (RFC 9110 8.4.1.2), or raw
 * deflate as some clients send it; like ingest_gunzip otherwise.
 */
bool
ingest_inflate(const char *in, size_t inlen, size_t limit, char **out, size_t *outlen,
			   const char **why)
{
	bool		zlib_header = inlen >= 2 && (((unsigned char) in[0]) & 0x0f) == 8 &&
		((((unsigned char) in[0]) << 8) | (unsigned char) in[1]) % 31 == 0;

	return decompress(in, inlen, limit, zlib_header ? 15 : -15,
					  "the body is not valid zlib/deflate data (Content-Encoding: deflate), or it is truncated",
					  out, outlen, why);
}
