/*-------------------------------------------------------------------------
 *
 * s3_client.c
 *		Streaming uploads to S3-compatible object storage with libcurl,
 *		signed with AWS Signature Version 4 (CURLOPT_AWS_SIGV4).
 *
 * An upload buffers at most one part (logagg.sync_part_size bytes).  An
 * object that fits in one part is sent with a single PUT; a larger one
 * becomes a multipart upload (CreateMultipartUpload, UploadPart for each
 * full buffer, CompleteMultipartUpload), and any failure after the create
 * sends AbortMultipartUpload so the store does not keep orphan parts.
 *
 * What libcurl 7.88 does not do for S3 and we therefore do here (see
 * docs/design.md §6): it sends no x-amz-content-sha256 header, so we
 * compute the payload's SHA-256 and send it (S3 refuses requests without
 * it); it does not canonicalise the query string, so every query we build
 * is already sorted with "=" after valueless names; it does not encode
 * the path, so object keys are percent-encoded here (RFC 3986, "/" kept).
 *
 * Custom endpoints (MinIO, R2, GCS interop, test servers) are addressed
 * path-style (ENDPOINT/BUCKET/KEY), which needs no wildcard DNS or TLS
 * certificate per bucket; AWS itself is addressed virtual-hosted style.
 *
 * This file calls nothing in PostgreSQL: it runs on the worker's (or the
 * sync_now() backend's) main thread, reports errors as text, and checks
 * cfg->interrupted() from curl's progress callback so that SIGTERM or a
 * query cancel stops a long transfer promptly without a longjmp through
 * libcurl.  Error texts never contain credentials.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "sync.h"

#define MAX_PARTS 10000			/* S3's limit */

typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

typedef struct PartTag
{
	char		etag[128];
} PartTag;

struct S3Upload
{
	S3Config	cfg;
	char	   *object_url;		/* ENDPOINT/BUCKET/ENCODED-KEY */
	Buf			part;			/* the part being filled */
	char		upload_id[512];	/* multipart upload id, "" while single */
	PartTag    *tags;
	int			nparts;
};

/*
 * One easy handle per process, reset before each request: curl keeps its
 * connection cache in the handle, so the requests of a cycle reuse one
 * keep-alive connection.
 */
static CURL *curl_handle = NULL;
static bool curl_initialised = false;

static bool
buf_reserve(Buf *b, size_t need)
{
	if (b->cap >= need)
		return true;
	{
		size_t		ncap = b->cap ? b->cap : 8192;
		char	   *n;

		while (ncap < need)
			ncap *= 2;
		n = realloc(b->data, ncap);
		if (n == NULL)
			return false;
		b->data = n;
		b->cap = ncap;
	}
	return true;
}

static bool
buf_append(Buf *b, const void *data, size_t len)
{
	if (!buf_reserve(b, b->len + len + 1))
		return false;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return true;
}

static void
sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

/* RFC 3986: keep unreserved characters (and "/" when asked), encode the rest. */
void
s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		o = 0;

	for (const unsigned char *p = (const unsigned char *) in; *p; p++)
	{
		bool		keep = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' ||
			*p == '~' || (keep_slash && *p == '/');

		if (o + 4 >= outlen)
			break;
		if (keep)
			out[o++] = *p;
		else
		{
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
}

static size_t
collect_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Buf		   *b = userdata;

	/* keep at most 64 kB of a response: enough for any S3 reply we parse */
	if (b->len < 65536)
		(void) buf_append(b, ptr, size * nmemb);
	return size * nmemb;
}

typedef struct HeaderCapture
{
	char		etag[128];
} HeaderCapture;

static size_t
header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HeaderCapture *h = userdata;
	size_t		n = size * nmemb;

	if (n > 5 && strncasecmp(ptr, "ETag:", 5) == 0)
	{
		const char *v = ptr + 5;
		size_t		vl = n - 5;

		while (vl > 0 && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (vl >= sizeof(h->etag))
			vl = sizeof(h->etag) - 1;
		memcpy(h->etag, v, vl);
		h->etag[vl] = '\0';
	}
	return n;
}

static int
progress_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			curl_off_t ultotal, curl_off_t ulnow)
{
	const S3Config *cfg = clientp;

	/* non-zero aborts the transfer with CURLE_ABORTED_BY_CALLBACK */
	return (cfg->interrupted && cfg->interrupted()) ? 1 : 0;
}

/* Pull <Tag>value</Tag> out of an S3 XML reply (no namespaces needed). */
static bool
xml_value(const char *xml, const char *tag, char *out, size_t outlen)
{
	char		open[64];
	char		close[64];
	const char *s;
	const char *e;
	size_t		n;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if (xml == NULL || (s = strstr(xml, open)) == NULL)
		return false;
	s += strlen(open);
	if ((e = strstr(s, close)) == NULL)
		return false;
	n = e - s;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

/*
 * One signed request.  query is "" or already canonical ("uploads=",
 * "partNumber=3&uploadId=..." - sorted, with "=").  Returns true on a 2xx
 * reply without an <Error> body (CompleteMultipartUpload can fail with 200).
 */
static bool
s3_request(const S3Config *cfg, const char *method, const char *url,
		   const char *query, const char *body, size_t len,
		   Buf *resp, HeaderCapture *hdrs, char *err, size_t errlen)
{
	char		fullurl[4096];
	char		sigv4[128];
	char		hash[65];
	char		hashhdr[128];
	char		curlerr[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL;
	CURLcode	rc;
	long		status = 0;
	bool		ok;

	if (!curl_initialised)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		{
			snprintf(err, errlen, "could not initialise libcurl");
			return false;
		}
		curl_initialised = true;
	}
	if (curl_handle == NULL && (curl_handle = curl_easy_init()) == NULL)
	{
		snprintf(err, errlen, "could not create a libcurl handle");
		return false;
	}
	curl_easy_reset(curl_handle);

	snprintf(fullurl, sizeof(fullurl), "%s%s%s", url, query[0] ? "?" : "", query);
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", cfg->region);
	sha256_hex(body ? body : "", body ? len : 0, hash);
	snprintf(hashhdr, sizeof(hashhdr), "x-amz-content-sha256: %s", hash);
	headers = curl_slist_append(headers, hashhdr);
	/*
	 * No "Expect:" removal header here: libcurl 7.88 would sign it (as an
	 * empty header) without sending it.  A zero 100-continue timeout below
	 * sends the body at once instead.
	 */
	if (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0)
		headers = curl_slist_append(headers, "Content-Type: application/octet-stream");

	curl_easy_setopt(curl_handle, CURLOPT_URL, fullurl);
	curl_easy_setopt(curl_handle, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl_handle, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(curl_handle, CURLOPT_USERNAME, cfg->access_key);
	curl_easy_setopt(curl_handle, CURLOPT_PASSWORD, cfg->secret_key);
	curl_easy_setopt(curl_handle, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl_handle, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl_handle, CURLOPT_ERRORBUFFER, curlerr);
	curl_easy_setopt(curl_handle, CURLOPT_CONNECTTIMEOUT_MS, cfg->timeout_ms);
	/* a stall (not a slow big part) is what times out */
	curl_easy_setopt(curl_handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl_handle, CURLOPT_LOW_SPEED_TIME, (cfg->timeout_ms + 999) / 1000);
	/*
	 * And a deadline for the whole request: the stall check alone reacts
	 * slowly to a server that took the body and then goes silent (curl
	 * averages speed over several seconds).  Allow the timeout plus the
	 * body at a modest 256 kB/s.
	 */
	curl_easy_setopt(curl_handle, CURLOPT_TIMEOUT_MS,
					 cfg->timeout_ms + (long) (len / 256));
	curl_easy_setopt(curl_handle, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
	curl_easy_setopt(curl_handle, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl_handle, CURLOPT_XFERINFOFUNCTION, progress_cb);
	curl_easy_setopt(curl_handle, CURLOPT_XFERINFODATA, (void *) cfg);
	curl_easy_setopt(curl_handle, CURLOPT_WRITEFUNCTION, collect_cb);
	curl_easy_setopt(curl_handle, CURLOPT_WRITEDATA, resp);
	if (hdrs)
	{
		curl_easy_setopt(curl_handle, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(curl_handle, CURLOPT_HEADERDATA, hdrs);
	}
	if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0)
	{
		/*
		 * POSTFIELDS (with the method overridden) rather than a read
		 * callback: libcurl's SigV4 code then hashes the very bytes it
		 * sends, matching our x-amz-content-sha256.
		 */
		curl_easy_setopt(curl_handle, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
		curl_easy_setopt(curl_handle, CURLOPT_POSTFIELDS, body ? body : "");
	}
	curlerr[0] = '\0';
	rc = curl_easy_perform(curl_handle);
	curl_slist_free_all(headers);
	/* do not leave pointers to our stack in the reused handle */
	curl_easy_setopt(curl_handle, CURLOPT_ERRORBUFFER, NULL);

	if (rc != CURLE_OK)
	{
		snprintf(err, errlen, "%s %s: %s", method, url,
				 curlerr[0] ? curlerr : curl_easy_strerror(rc));
		return false;
	}
	curl_easy_getinfo(curl_handle, CURLINFO_RESPONSE_CODE, &status);
	ok = status >= 200 && status < 300 &&
		!(resp->data && strstr(resp->data, "<Error>") != NULL);
	if (!ok)
	{
		char		code[128] = "";
		char		msg[200] = "";

		(void) xml_value(resp->data, "Code", code, sizeof(code));
		(void) xml_value(resp->data, "Message", msg, sizeof(msg));
		snprintf(err, errlen, "%s %s: HTTP %ld%s%s%s%s", method, url, status,
				 code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
	}
	return ok;
}

S3Upload *
s3_upload_begin(const S3Config *cfg, const char *key, char *err, size_t errlen)
{
	S3Upload   *u = calloc(1, sizeof(S3Upload));
	char	   *enckey;
	size_t		enclen = strlen(key) * 3 + 1;
	size_t		urllen;

	if (u == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->cfg = *cfg;
	enckey = malloc(enclen);
	urllen = enclen + strlen(cfg->endpoint) + strlen(cfg->bucket) + strlen(cfg->region) + 64;
	u->object_url = malloc(urllen);
	if (enckey == NULL || u->object_url == NULL)
	{
		free(enckey);
		free(u->object_url);
		free(u);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s3_uri_encode(key, true, enckey, enclen);
	if (cfg->endpoint[0] != '\0')
	{
		size_t		el = strlen(cfg->endpoint);

		while (el > 0 && cfg->endpoint[el - 1] == '/')
			el--;
		snprintf(u->object_url, urllen, "%.*s/%s/%s", (int) el, cfg->endpoint,
				 cfg->bucket, enckey);
	}
	else
		snprintf(u->object_url, urllen, "https://%s.s3.%s.amazonaws.com/%s",
				 cfg->bucket, cfg->region, enckey);
	free(enckey);
	return u;
}

static void
s3_upload_free(S3Upload *u)
{
	free(u->part.data);
	free(u->tags);
	free(u->object_url);
	free(u);
}

/* Send the buffered bytes as the next part, starting the multipart upload if needed. */
static bool
flush_part(S3Upload *u, char *err, size_t errlen)
{
	Buf			resp = {0};
	HeaderCapture hc = {{0}};
	char		query[700];
	char		encid[1600];
	bool		ok;

	if (u->upload_id[0] == '\0')
	{
		ok = s3_request(&u->cfg, "POST", u->object_url, "uploads=", NULL, 0,
						&resp, NULL, err, errlen);
		if (ok && !xml_value(resp.data, "UploadId", u->upload_id, sizeof(u->upload_id)))
		{
			snprintf(err, errlen, "POST %s?uploads=: no UploadId in the reply", u->object_url);
			ok = false;
		}
		free(resp.data);
		if (!ok)
			return false;
		memset(&resp, 0, sizeof(resp));
	}
	if (u->nparts >= MAX_PARTS)
	{
		snprintf(err, errlen, "object needs more than %d parts; raise logagg.sync_part_size", MAX_PARTS);
		return false;
	}
	if (u->tags == NULL || (u->nparts & 63) == 0)
	{
		PartTag    *n = realloc(u->tags, sizeof(PartTag) * (u->nparts + 64));

		if (n == NULL)
		{
			snprintf(err, errlen, "out of memory");
			return false;
		}
		u->tags = n;
	}
	s3_uri_encode(u->upload_id, false, encid, sizeof(encid));
	snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", u->nparts + 1, encid);
	ok = s3_request(&u->cfg, "PUT", u->object_url, query, u->part.data, u->part.len,
					&resp, &hc, err, errlen);
	free(resp.data);
	if (!ok)
		return false;
	if (hc.etag[0] == '\0')
	{
		snprintf(err, errlen, "PUT %s part %d: no ETag in the reply", u->object_url, u->nparts + 1);
		return false;
	}
	strcpy(u->tags[u->nparts].etag, hc.etag);
	u->nparts++;
	u->part.len = 0;
	return true;
}

bool
s3_upload_write(S3Upload *u, const void *data, size_t len, char *err, size_t errlen)
{
	const char *p = data;

	while (len > 0)
	{
		size_t		room = u->cfg.part_size - u->part.len;
		size_t		n = len < room ? len : room;

		if (!buf_reserve(&u->part, u->cfg.part_size + 1))
		{
			snprintf(err, errlen, "out of memory for a %zu-byte part buffer", u->cfg.part_size);
			return false;
		}
		memcpy(u->part.data + u->part.len, p, n);
		u->part.len += n;
		p += n;
		len -= n;
		/*
		 * Flush only when more data follows a full buffer: a full buffer at
		 * the end may still be the whole object, which one PUT handles.
		 */
		if (u->part.len == u->cfg.part_size && len > 0)
		{
			if (!flush_part(u, err, errlen))
				return false;
		}
	}
	return true;
}

/*
 * Complete the object.  On success the upload is freed and *nparts says how
 * many multipart parts it took (0 = single PUT); on failure the caller
 * still owns u and must call s3_upload_abort().
 */
bool
s3_upload_finish(S3Upload *u, int *nparts, char *err, size_t errlen)
{
	Buf			resp = {0};
	bool		ok;

	if (u->upload_id[0] == '\0')
	{
		ok = s3_request(&u->cfg, "PUT", u->object_url, "", u->part.data, u->part.len,
						&resp, NULL, err, errlen);
		free(resp.data);
		if (ok)
		{
			*nparts = 0;
			s3_upload_free(u);
		}
		return ok;
	}
	/* the last part may be short; S3 allows that */
	if (u->part.len > 0 && !flush_part(u, err, errlen))
		return false;
	{
		Buf			xml = {0};
		char		query[1600];
		char		encid[1600];
		char		line[256];

		ok = buf_append(&xml, "<CompleteMultipartUpload>", 25);
		for (int i = 0; ok && i < u->nparts; i++)
		{
			int			n = snprintf(line, sizeof(line),
									 "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
									 i + 1, u->tags[i].etag);

			ok = buf_append(&xml, line, n);
		}
		ok = ok && buf_append(&xml, "</CompleteMultipartUpload>", 26);
		if (!ok)
		{
			free(xml.data);
			snprintf(err, errlen, "out of memory");
			return false;
		}
		s3_uri_encode(u->upload_id, false, encid, sizeof(encid));
		snprintf(query, sizeof(query), "uploadId=%s", encid);
		ok = s3_request(&u->cfg, "POST", u->object_url, query, xml.data, xml.len,
						&resp, NULL, err, errlen);
		free(xml.data);
		free(resp.data);
	}
	if (ok)
	{
		*nparts = u->nparts;
		s3_upload_free(u);
	}
	return ok;
}

/*
 * Give up on an upload: a started multipart upload is aborted so the
 * store frees its parts.  Best effort; the interrupt check is switched off
 * so that a cancel still lets this small request through.
 */
void
s3_upload_abort(S3Upload *u)
{
	if (u == NULL)
		return;
	if (u->upload_id[0] != '\0')
	{
		Buf			resp = {0};
		char		query[1600];
		char		encid[1600];
		char		err[SYNC_ERR_LEN];

		u->cfg.interrupted = NULL;
		s3_uri_encode(u->upload_id, false, encid, sizeof(encid));
		snprintf(query, sizeof(query), "uploadId=%s", encid);
		(void) s3_request(&u->cfg, "DELETE", u->object_url, query, NULL, 0,
						  &resp, NULL, err, sizeof(err));
		free(resp.data);
	}
	s3_upload_free(u);
}

/* Drop the cached connection (e.g. after the endpoint changed). */
void
s3_client_cleanup(void)
{
	if (curl_handle)
	{
		curl_easy_cleanup(curl_handle);
		curl_handle = NULL;
	}
}
