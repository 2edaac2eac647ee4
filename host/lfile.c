/*
 * lfile.c: files that may hold device data or secrets. They are created
 * mode 0600 and never through a symbolic link planted at their path (the
 * link would let whoever planted it choose which file athost overwrites,
 * or read what it writes). For C: ath_file_create() (transcripts, JUnit
 * reports). For Lua: athost.write_private(path, data), which replaces a
 * file atomically through a fresh temporary name, and athost.stat(path).
 */
#include "host.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int ath_file_create(const char *path, int excl)
{
    struct stat st;
    int fd = open(path,
                  O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
                      (excl ? O_EXCL : O_TRUNC),
                  0600);
    if (fd < 0)
        return -errno;
    /* A regular file that was there before keeps its mode through
     * O_CREAT: make it private too. A device or FIFO (-l /dev/null) is
     * left as it is. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

const char *ath_file_why(int err)
{
    if (err == ELOOP)
        return "it is a symbolic link (not followed: remove it or give "
               "another path)";
    return strerror(err);
}

/* Writes all of s[0, n) to fd. 0 or -1 (errno set). */
static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* nil, "ECODE: what path: why", "ECODE" */
static int file_fail(lua_State *L, int err, const char *what, const char *path)
{
    const char *code = err == ELOOP    ? "ELOOP"
                       : err == ENOENT ? "ENOENT"
                       : err == EACCES ? "EACCES"
                       : err == EEXIST ? "EEXIST"
                       : err == ENOSPC ? "ENOSPC"
                                       : "EIO";
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s %s: %s", code, what, path, ath_file_why(err));
    lua_pushstring(L, code);
    return 3;
}

/* athost.write_private(path, data): path holds data, mode 0600, or the
 * old content if anything failed: data goes to a new file of a random
 * name in the same directory (O_EXCL: nothing planted there is opened),
 * is fsynced, and is renamed over path (a symlink at path is replaced,
 * not followed). Returns path, or nil, message, code. */
static int l_write_private(lua_State *L)
{
    size_t n, plen;
    const char *path = luaL_checklstring(L, 1, &plen);
    const char *data = luaL_checklstring(L, 2, &n);
    char *tmp = malloc(plen + 32), *slash, *dir;
    unsigned char rnd[8];
    int fd = -1, tries, e;
    if (tmp == NULL)
        return luaL_error(L, "out of memory");
    for (tries = 0; tries < 16 && fd < 0; tries++) {
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            e = errno;
            free(tmp);
            return file_fail(L, e, "cannot write", path);
        }
        snprintf(tmp, plen + 32, "%s.%02x%02x%02x%02x%02x%02x%02x%02x.tmp",
                 path, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
                 rnd[7]);
        fd = ath_file_create(tmp, 1);
        if (fd < 0 && fd != -EEXIST)
            break;
    }
    if (fd < 0) {
        free(tmp);
        return file_fail(L, -fd, "cannot write", path);
    }
    if (write_all(fd, data, n) != 0 || fsync(fd) != 0) {
        e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return file_fail(L, e, "cannot write", path);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        free(tmp);
        return file_fail(L, e, "cannot replace", path);
    }
    /* The rename itself is durable once the directory is synced. */
    slash = strrchr(tmp, '/');
    dir = slash == NULL ? strdup(".") : tmp;
    if (slash == tmp)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    if (dir != NULL && (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    if (dir != tmp)
        free(dir);
    free(tmp);
    lua_pushvalue(L, 1);
    return 1;
}

/* athost.stat(path [, nofollow]): {type, mode, uid, gid, size, mine} of
 * path (of the link itself with nofollow), or nil, message, code. type:
 * "file", "dir", "link", "char", "block", "fifo", "socket"; mode: the
 * permission bits (0755 is 493); mine: owned by the effective user. */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    const char *type;
    int r = lua_toboolean(L, 2) ? lstat(path, &st) : stat(path, &st);
    if (r != 0)
        return file_fail(L, errno, "cannot stat", path);
    type = S_ISREG(st.st_mode)    ? "file"
           : S_ISDIR(st.st_mode)  ? "dir"
           : S_ISLNK(st.st_mode)  ? "link"
           : S_ISCHR(st.st_mode)  ? "char"
           : S_ISBLK(st.st_mode)  ? "block"
           : S_ISFIFO(st.st_mode) ? "fifo"
                                  : "socket";
    lua_createtable(L, 0, 6);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.st_gid);
    lua_setfield(L, -2, "gid");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushboolean(L, st.st_uid == geteuid());
    lua_setfield(L, -2, "mine");
    return 1;
}

/* athost.uid(): the effective user id. */
static int l_uid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)geteuid());
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* athost.dir(path): the names in a directory (no . and ..), sorted; or
 * nil, message, code. */
static int l_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    if (d == NULL)
        return file_fail(L, errno, "cannot list", path);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof *nn);
            if (nn == NULL)
                break;
            names = nn;
        }
        if ((names[n] = strdup(e->d_name)) != NULL)
            n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, cmp_names);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        free(names[i]);
    }
    free(names);
    return 1;
}

/* athost.readlink(path): a symlink's target as written; or nil, message,
 * code. */
static int l_readlink(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char buf[4096];
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0)
        return file_fail(L, errno, "cannot read link", path);
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* athost.realpath(path): the absolute path with every link resolved; or
 * nil, message, code. */
static int l_realpath(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char *r = realpath(path, NULL);
    if (r == NULL)
        return file_fail(L, errno, "cannot resolve", path);
    lua_pushstring(L, r);
    free(r);
    return 1;
}

static const luaL_Reg lfile_funcs[] = {{"write_private", l_write_private},
                                       {"stat", l_stat},
                                       {"uid", l_uid},
                                       {"dir", l_dir},
                                       {"readlink", l_readlink},
                                       {"realpath", l_realpath},
                                       {NULL, NULL}};

void ath_lfile_open(lua_State *L)
{
    luaL_setfuncs(L, lfile_funcs, 0);
}
