/*-------------------------------------------------------------------------
 *
 * static.c
 *		The web console's files: GET / is index.html, GET /console/NAME a
 *		file of $(sharedir)/extension/logagg_console/, with its
 *		Content-Type (the security headers are added by http.c).
 *
 * Only names of [A-Za-z0-9._-] that do not start with '.' are served, so
 * no request reaches outside that folder.  Files are small: read whole,
 * in the callback, with plain open/read (no palloc, no ereport).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reader/reader_int.h"

/* Larger files are refused: the console's are a few kB. */
#define STATIC_MAX_BYTES	(8 * 1024 * 1024)

static const struct
{
	const char *ext;
	const char *type;
}			types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".json", "application/json"},
	{".map", "application/json"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".txt", "text/plain; charset=utf-8"},
	{".woff2", "font/woff2"},
};

static const char *
content_type(const char *name)
{
	size_t		len = strlen(name);

	for (int i = 0; i < lengthof(types); i++)
	{
		size_t		el = strlen(types[i].ext);

		if (len > el && strcmp(name + len - el, types[i].ext) == 0)
			return types[i].type;
	}
	return "application/octet-stream";
}

static bool
valid_name(const char *name)
{
	if (name[0] == '\0' || name[0] == '.' || strlen(name) > 128)
		return false;
	for (const char *p = name; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

static int
not_found(RConn *c)
{
	return reader_reply_error(c, HTTP_STATUS_NOT_FOUND, "not found");
}

/* Serve "/" or "/console/NAME"; anything else is 404. */
int
reader_static_file(RConn *c, const char *uri)
{
	const char *name;
	char		path[MAXPGPATH];
	struct stat st;
	int			fd;
	char	   *data;
	ssize_t		n;
	int			r;

	if (strcmp(uri, "/") == 0)
		name = "index.html";
	else if (strncmp(uri, "/console/", 9) == 0)
		name = uri + 9;
	else
		return not_found(c);
	if (!valid_name(name))
		return not_found(c);
	snprintf(path, sizeof(path), "%s/%s", reader_console_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return not_found(c);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX_BYTES ||
		(data = malloc(st.st_size + 1)) == NULL)
	{
		close(fd);
		return not_found(c);
	}
	n = read(fd, data, st.st_size);
	close(fd);
	if (n != st.st_size)
	{
		free(data);
		return not_found(c);
	}
	r = reader_reply(c, HTTP_STATUS_OK, content_type(name), data, n);
	free(data);
	return r;
}
