/*-------------------------------------------------------------------------
 *
 * sync_file.c
 *		The file:///DIR cloud-sync target: writes the same keys as the S3
 *		target, as files under DIR.
 *
 * Readers must never see a half-written object, and a crash must never
 * leave one at the final name: each object is written to a temporary
 * file beside its final name (".KEY.tmp.PID"), fsync'ed, renamed over the
 * final name (atomic on POSIX file systems, so a retry simply replaces
 * it), and then the directory is fsync'ed so the rename itself is durable
 * before logagg.sync_log says the object exists.
 *
 * Like s3_client.c this file does not call into PostgreSQL: errors come
 * back as text for logagg.sync_log.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "sync.h"

struct FileUpload
{
	int			fd;
	char	   *final_path;
	char	   *tmp_path;
	char	   *dir_path;		/* directory holding final_path */
};

/* mkdir -p for every directory above path's last component */
static bool
make_parents(const char *path, char *err, size_t errlen)
{
	char	   *copy = strdup(path);
	char	   *p;

	if (copy == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (p = copy + 1; *p; p++)
	{
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0750) != 0 && errno != EEXIST)
		{
			snprintf(err, errlen, "could not create directory \"%s\": %s", copy, strerror(errno));
			free(copy);
			return false;
		}
		*p = '/';
	}
	free(copy);
	return true;
}

FileUpload *
file_upload_begin(const char *dir, const char *key, char *err, size_t errlen)
{
	FileUpload *u = calloc(1, sizeof(FileUpload));
	size_t		n = strlen(dir) + strlen(key) + 64;
	const char *slash;

	if (u == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->fd = -1;
	u->final_path = malloc(n);
	u->tmp_path = malloc(n);
	u->dir_path = malloc(n);
	if (!u->final_path || !u->tmp_path || !u->dir_path)
	{
		snprintf(err, errlen, "out of memory");
		file_upload_abort(u);
		return NULL;
	}
	snprintf(u->final_path, n, "%s/%s", dir, key);
	slash = strrchr(u->final_path, '/');
	snprintf(u->dir_path, n, "%.*s", (int) (slash - u->final_path), u->final_path);
	snprintf(u->tmp_path, n, "%s/.%s.tmp.%d", u->dir_path, slash + 1, (int) getpid());
	if (!make_parents(u->final_path, err, errlen))
	{
		file_upload_abort(u);
		return NULL;
	}
	u->fd = open(u->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (u->fd < 0)
	{
		snprintf(err, errlen, "could not create file \"%s\": %s", u->tmp_path, strerror(errno));
		file_upload_abort(u);
		return NULL;
	}
	return u;
}

bool
file_upload_write(FileUpload *u, const void *data, size_t len, char *err, size_t errlen)
{
	const char *p = data;

	while (len > 0)
	{
		ssize_t		w = write(u->fd, p, len);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "could not write file \"%s\": %s", u->tmp_path, strerror(errno));
			return false;
		}
		p += w;
		len -= w;
	}
	return true;
}

/* On failure the caller still owns u and must call file_upload_abort(). */
bool
file_upload_finish(FileUpload *u, char *err, size_t errlen)
{
	int			dfd;

	if (fsync(u->fd) != 0)
	{
		snprintf(err, errlen, "could not fsync file \"%s\": %s", u->tmp_path, strerror(errno));
		return false;
	}
	if (close(u->fd) != 0)
	{
		u->fd = -1;
		snprintf(err, errlen, "could not close file \"%s\": %s", u->tmp_path, strerror(errno));
		return false;
	}
	u->fd = -1;
	if (rename(u->tmp_path, u->final_path) != 0)
	{
		snprintf(err, errlen, "could not rename \"%s\" to \"%s\": %s",
				 u->tmp_path, u->final_path, strerror(errno));
		return false;
	}
	dfd = open(u->dir_path, O_RDONLY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
	{
		snprintf(err, errlen, "could not fsync directory \"%s\": %s", u->dir_path, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		/* the file is in place; still report failure so the object is retried */
		u->tmp_path[0] = '\0';
		return false;
	}
	close(dfd);
	free(u->final_path);
	free(u->tmp_path);
	free(u->dir_path);
	free(u);
	return true;
}

void
file_upload_abort(FileUpload *u)
{
	if (u == NULL)
		return;
	if (u->fd >= 0)
		close(u->fd);
	if (u->tmp_path && u->tmp_path[0] != '\0')
		(void) unlink(u->tmp_path);
	free(u->final_path);
	free(u->tmp_path);
	free(u->dir_path);
	free(u);
}
