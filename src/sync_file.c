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
 * Nothing below DIR is trusted to be what we made it: directories are
 * created and opened one component at a time relative to the one above
 * (mkdirat, openat with O_NOFOLLOW), the object and its temporary file are
 * never opened through a symbolic link, and a link found anywhere below
 * DIR fails the upload with an error naming it (DIR itself may be a link:
 * the admin chose it).
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
#include <limits.h>
#include <unistd.h>

#include "sync.h"

struct FileUpload
{
	int			fd;
	int			dirfd;			/* directory holding the object */
	char	   *final_path;		/* for messages */
	char	   *final_name;		/* last component, relative to dirfd */
	char	   *tmp_name;		/* ".NAME.tmp.PID", relative to dirfd */
	bool		tmp_created;
};

/* mkdir -p for the sync directory itself (the admin chose that path) */
static bool
make_root(const char *dir, char *err, size_t errlen)
{
	char	   *copy = malloc(strlen(dir) + 2);
	char	   *p;

	if (copy == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return false;
	}
	sprintf(copy, "%s/", dir);
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

/*
 * name (relative to dirfd, shown as path) is a symbolic link: refuse it.
 * Whatever is below the sync directory is ours; a link there (planted by
 * anyone who can write into it) would make us create or overwrite files
 * wherever it points, with the server's permissions.
 */
static bool
is_symlink(int dirfd, const char *name, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
	{
		snprintf(err, errlen, "refusing to follow the symbolic link \"%s\" below the sync directory", path);
		return true;
	}
	return false;
}

/*
 * Open (creating it if needed) each directory of key below root, never
 * following a symbolic link: every component is created with mkdirat and
 * opened with openat(O_NOFOLLOW | O_DIRECTORY) relative to the one above.
 * Returns the fd of the directory that holds key's last component, or -1
 * with err set.
 */
static int
open_key_dir(const char *root, const char *key, char *err, size_t errlen)
{
	char	   *path = malloc(strlen(root) + strlen(key) + 2);
	size_t		rootlen = strlen(root);
	const char *comp = key;
	const char *slash;
	int			fd;

	if (path == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
	{
		snprintf(err, errlen, "could not open directory \"%s\": %s", root, strerror(errno));
		free(path);
		return -1;
	}
	memcpy(path, root, rootlen);
	path[rootlen] = '\0';
	while ((slash = strchr(comp, '/')) != NULL)
	{
		char		name[NAME_MAX + 1];
		size_t		len = slash - comp;
		int			next;

		if (len == 0)
		{
			comp = slash + 1;
			continue;
		}
		if (len > NAME_MAX)
		{
			snprintf(err, errlen, "key component too long in \"%s\"", key);
			break;
		}
		memcpy(name, comp, len);
		name[len] = '\0';
		sprintf(path + strlen(path), "/%s", name);
		if (mkdirat(fd, name, 0750) != 0 && errno != EEXIST)
		{
			snprintf(err, errlen, "could not create directory \"%s\": %s", path, strerror(errno));
			break;
		}
		if (is_symlink(fd, name, path, err, errlen))
			break;
		next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
		{
			if (errno == ELOOP)
				snprintf(err, errlen, "refusing to follow the symbolic link \"%s\" below the sync directory", path);
			else
				snprintf(err, errlen, "could not open directory \"%s\": %s", path, strerror(errno));
			break;
		}
		close(fd);
		fd = next;
		comp = slash + 1;
	}
	free(path);
	if (slash != NULL)
	{
		close(fd);
		return -1;
	}
	return fd;
}

FileUpload *
file_upload_begin(const char *dir, const char *key, char *err, size_t errlen)
{
	FileUpload *u = calloc(1, sizeof(FileUpload));
	size_t		n = strlen(dir) + strlen(key) + 64;
	const char *base;

	if (u == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->fd = -1;
	u->dirfd = -1;
	base = strrchr(key, '/');
	base = base ? base + 1 : key;
	u->final_path = malloc(n);
	u->final_name = strdup(base);
	u->tmp_name = malloc(strlen(base) + 32);
	if (!u->final_path || !u->final_name || !u->tmp_name)
	{
		snprintf(err, errlen, "out of memory");
		file_upload_abort(u);
		return NULL;
	}
	snprintf(u->final_path, n, "%s/%s", dir, key);
	snprintf(u->tmp_name, strlen(base) + 32, ".%s.tmp.%d", base, (int) getpid());
	if (!make_root(dir, err, errlen) ||
		(u->dirfd = open_key_dir(dir, key, err, errlen)) < 0 ||
		is_symlink(u->dirfd, u->final_name, u->final_path, err, errlen))
	{
		file_upload_abort(u);
		return NULL;
	}
	u->fd = openat(u->dirfd, u->tmp_name,
				   O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (u->fd < 0)
	{
		snprintf(err, errlen, "could not create a temporary file for \"%s\": %s",
				 u->final_path, errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		file_upload_abort(u);
		return NULL;
	}
	u->tmp_created = true;
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
			snprintf(err, errlen, "could not write the temporary file for \"%s\": %s",
					 u->final_path, strerror(errno));
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
	if (fsync(u->fd) != 0)
	{
		snprintf(err, errlen, "could not fsync the temporary file for \"%s\": %s",
				 u->final_path, strerror(errno));
		return false;
	}
	if (close(u->fd) != 0)
	{
		u->fd = -1;
		snprintf(err, errlen, "could not close the temporary file for \"%s\": %s",
				 u->final_path, strerror(errno));
		return false;
	}
	u->fd = -1;
	/* renameat replaces a name, it never writes through a link */
	if (renameat(u->dirfd, u->tmp_name, u->dirfd, u->final_name) != 0)
	{
		snprintf(err, errlen, "could not rename the temporary file to \"%s\": %s",
				 u->final_path, strerror(errno));
		return false;
	}
	u->tmp_created = false;
	if (fsync(u->dirfd) != 0)
	{
		/* the file is in place; still report failure so the object is retried */
		snprintf(err, errlen, "could not fsync the directory of \"%s\": %s",
				 u->final_path, strerror(errno));
		return false;
	}
	file_upload_abort(u);		/* frees it; nothing left to remove */
	return true;
}

void
file_upload_abort(FileUpload *u)
{
	if (u == NULL)
		return;
	if (u->fd >= 0)
		close(u->fd);
	if (u->tmp_created)
		(void) unlinkat(u->dirfd, u->tmp_name, 0);
	if (u->dirfd >= 0)
		close(u->dirfd);
	free(u->final_path);
	free(u->final_name);
	free(u->tmp_name);
	free(u);
}
