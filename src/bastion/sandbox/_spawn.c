/* bastion.sandbox._spawn: start a sandbox launcher already inside its cgroups, under its
 * rlimits, as the unprivileged uid, with one vfork() and one execve().
 *
 * Why C: these steps must happen in the child between fork and exec. From Python that
 * needs a preexec_fn, which makes CPython fork() (copying the supervisor's page tables,
 * 4-6 ms for a typical Bastion process) instead of vfork(); the pure-Python alternative in
 * _launch.py execs two helper programs (sh, setpriv) instead, ~2.5 ms per start. Here the
 * child runs only async-signal-safe system calls on data prepared by the parent, as
 * CPython's own _posixsubprocess does, and raw setgroups/setresgid/setresuid syscalls:
 * glibc's wrappers would signal the *parent's* threads (setxid broadcast) from a vfork
 * child.
 *
 * Order in the child (each failure is reported to the parent and nothing is executed):
 * default signal dispositions, setsid, stdio, close-on-exec for every other descriptor
 * except the ones passed, join the cgroups (write "0" = the writer), rlimits, chdir, drop
 * groups/gid/uid, PR_SET_PDEATHSIG=SIGKILL (after the uid change, which clears it),
 * empty signal mask, execve. No no_new_privs here: the launcher sets it for the sandbox
 * itself, and a setuid-root bwrap (hosts without unprivileged user namespaces) needs it
 * unset to start.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

enum step { S_SIGNALS = 1, S_SETSID, S_STDIO, S_FDS, S_CGROUP, S_RLIMIT, S_CHDIR,
            S_GROUPS, S_GID, S_UID, S_PDEATHSIG, S_EXEC };

static const char *step_name(int s) {
    switch (s) {
    case S_SIGNALS: return "cannot reset signal dispositions";
    case S_SETSID: return "cannot start a new session";
    case S_STDIO: return "cannot set up stdin/stdout/stderr";
    case S_FDS: return "cannot mark descriptors close-on-exec";
    case S_CGROUP: return "cannot join the execution cgroup";
    case S_RLIMIT: return "cannot set an rlimit";
    case S_CHDIR: return "cannot change directory";
    case S_GROUPS: return "cannot clear supplementary groups";
    case S_GID: return "cannot drop to the sandbox gid";
    case S_UID: return "cannot drop to the sandbox uid";
    case S_PDEATHSIG: return "cannot set the parent-death signal";
    case S_EXEC: return "cannot execute the launcher";
    }
    return "unknown step";
}

typedef struct {
    char **argv, **envp, **joins;
    const char *cwd;
    int stdio[3];
    int *keep;
    Py_ssize_t nkeep, njoins, nlimits;
    int *res;
    rlim_t *lim;
    long uid, gid;
    int errfd;
    pid_t parent;
} plan_t;

static void fail(const plan_t *p, int step) {
    int msg[2] = {step, errno};
    ssize_t r = write(p->errfd, msg, sizeof msg);
    (void)r;
    _exit(126);
}

/* Runs in the vfork child: system calls only, no allocation, no Python. */
static void child(const plan_t *p) {
    /* Ignored signals stay ignored across exec; SIGPIPE and SIGXFSZ (Python ignores both)
     * must not, nor anything our own parent left ignored. The raw system call, because
     * glibc refuses its internal real-time signals; an all-zero kernel sigaction is
     * SIG_DFL with no flags and an empty mask, whatever the architecture's layout. */
    static const unsigned long zero[16];
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (syscall(SYS_rt_sigaction, sig, zero, NULL, (NSIG - 1) / 8) != 0 && errno != EINVAL)
            fail(p, S_SIGNALS);
    }
    if (setsid() < 0) fail(p, S_SETSID);
    int src[3];
    for (int i = 0; i < 3; i++) {
        src[i] = p->stdio[i];
        if (src[i] < 3 && src[i] != i) {  /* would be overwritten by an earlier dup2 */
            src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
            if (src[i] < 0) fail(p, S_STDIO);
        }
    }
    for (int i = 0; i < 3; i++) {
        if (src[i] == i) {
            if (fcntl(i, F_SETFD, 0) < 0) fail(p, S_STDIO);
        } else if (dup2(src[i], i) < 0) {
            fail(p, S_STDIO);
        }
    }
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        struct rlimit nofile;
        if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) fail(p, S_FDS);
        rlim_t top = nofile.rlim_cur > 65536 ? 65536 : nofile.rlim_cur;
        for (rlim_t fd = 3; fd < top; fd++) fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
    for (Py_ssize_t i = 0; i < p->nkeep; i++)
        if (p->keep[i] != p->errfd && fcntl(p->keep[i], F_SETFD, 0) < 0) fail(p, S_FDS);
    for (Py_ssize_t i = 0; i < p->njoins; i++) {
        int fd = open(p->joins[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) fail(p, S_CGROUP);
        if (write(fd, "0", 1) != 1) fail(p, S_CGROUP);
        close(fd);
    }
    for (Py_ssize_t i = 0; i < p->nlimits; i++) {
        struct rlimit rl = {p->lim[i], p->lim[i]};
        if (setrlimit(p->res[i], &rl) != 0) fail(p, S_RLIMIT);
    }
    if (chdir(p->cwd) != 0) fail(p, S_CHDIR);
    if (p->uid >= 0) {
        if (syscall(SYS_setgroups, 0, NULL) != 0) fail(p, S_GROUPS);
        if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) != 0) fail(p, S_GID);
        if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) != 0) fail(p, S_UID);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(p, S_PDEATHSIG);
    if (getppid() != p->parent) _exit(126);  /* the supervisor already died */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(p->argv[0], p->argv, p->envp);
    fail(p, S_EXEC);
}

/* A NULL-terminated char* array borrowing from a sequence of bytes objects. */
static char **cstrings(PyObject *seq, Py_ssize_t *n, const char *what) {
    *n = PySequence_Fast_GET_SIZE(seq);
    char **out = PyMem_Calloc((size_t)*n + 1, sizeof(char *));
    if (out == NULL) { PyErr_NoMemory(); return NULL; }
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
            PyMem_Free(out);
            return NULL;
        }
        out[i] = PyBytes_AS_STRING(item);
        if (strlen(out[i]) != (size_t)PyBytes_GET_SIZE(item)) {
            PyErr_Format(PyExc_ValueError, "%s contains a NUL byte", what);
            PyMem_Free(out);
            return NULL;
        }
    }
    return out;
}

PyDoc_STRVAR(spawn_doc,
"spawn(argv, envp, cwd, stdio, keep_fds, cgroup_files, rlimits, uid, gid) -> pid\n\n"
"argv, envp, cgroup_files: lists of bytes; cwd: bytes; stdio: (in, out, err) fds;\n"
"keep_fds: fds to leave open; rlimits: [(resource, value)] set as soft = hard;\n"
"uid/gid: -1 to keep ours. OSError names the step that failed; nothing ran then.");

static PyObject *spawn(PyObject *self, PyObject *args) {
    PyObject *argv_o, *envp_o, *keep_o, *joins_o, *lim_o;
    const char *cwd;
    int in_fd, out_fd, err_fd;
    long uid, gid;
    if (!PyArg_ParseTuple(args, "OOy(iii)OOOll", &argv_o, &envp_o, &cwd, &in_fd, &out_fd,
                          &err_fd, &keep_o, &joins_o, &lim_o, &uid, &gid))
        return NULL;
    PyObject *argv_f = NULL, *envp_f = NULL, *keep_f = NULL, *joins_f = NULL, *lim_f = NULL;
    plan_t p;
    memset(&p, 0, sizeof p);
    PyObject *result = NULL;
    Py_ssize_t n;
    if (!(argv_f = PySequence_Fast(argv_o, "argv must be a list"))) goto done;
    if (!(envp_f = PySequence_Fast(envp_o, "envp must be a list"))) goto done;
    if (!(keep_f = PySequence_Fast(keep_o, "keep_fds must be a list"))) goto done;
    if (!(joins_f = PySequence_Fast(joins_o, "cgroup_files must be a list"))) goto done;
    if (!(lim_f = PySequence_Fast(lim_o, "rlimits must be a list"))) goto done;
    if (PySequence_Fast_GET_SIZE(argv_f) < 1) {
        PyErr_SetString(PyExc_ValueError, "argv must not be empty");
        goto done;
    }
    if (!(p.argv = cstrings(argv_f, &n, "argv"))) goto done;
    if (!(p.envp = cstrings(envp_f, &n, "envp"))) goto done;
    if (!(p.joins = cstrings(joins_f, &p.njoins, "cgroup_files"))) goto done;
    p.nkeep = PySequence_Fast_GET_SIZE(keep_f);
    p.keep = PyMem_Calloc((size_t)p.nkeep + 1, sizeof(int));
    p.nlimits = PySequence_Fast_GET_SIZE(lim_f);
    p.res = PyMem_Calloc((size_t)p.nlimits + 1, sizeof(int));
    p.lim = PyMem_Calloc((size_t)p.nlimits + 1, sizeof(rlim_t));
    if (!p.keep || !p.res || !p.lim) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < p.nkeep; i++) {
        p.keep[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(keep_f, i));
        if (PyErr_Occurred()) goto done;
    }
    for (Py_ssize_t i = 0; i < p.nlimits; i++) {
        long long r, v;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(lim_f, i), "LL", &r, &v)) goto done;
        if (v < 0) { PyErr_SetString(PyExc_ValueError, "rlimit must be >= 0"); goto done; }
        p.res[i] = (int)r;
        p.lim[i] = (rlim_t)v;
    }
    p.cwd = cwd;
    p.stdio[0] = in_fd; p.stdio[1] = out_fd; p.stdio[2] = err_fd;
    p.uid = uid; p.gid = gid;
    p.parent = getpid();

    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) != 0) { PyErr_SetFromErrno(PyExc_OSError); goto done; }
    p.errfd = errpipe[1];
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);  /* no Python handler may run in the child */
    pid_t pid = vfork();
    if (pid == 0) child(&p);  /* never returns */
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(errpipe[1]);
    if (pid < 0) {
        close(errpipe[0]);
        errno = saved;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    int msg[2];
    ssize_t got;
    do { got = read(errpipe[0], msg, sizeof msg); } while (got < 0 && errno == EINTR);
    close(errpipe[0]);
    if (got == (ssize_t)sizeof msg) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", msg[1], step_name(msg[0]));
        if (exc != NULL) {
            PyErr_SetObject(PyExc_OSError, exc);
            Py_DECREF(exc);
        }
        goto done;
    }
    result = PyLong_FromLong((long)pid);
done:
    PyMem_Free(p.argv); PyMem_Free(p.envp); PyMem_Free(p.joins);
    PyMem_Free(p.keep); PyMem_Free(p.res); PyMem_Free(p.lim);
    Py_XDECREF(argv_f); Py_XDECREF(envp_f); Py_XDECREF(keep_f);
    Py_XDECREF(joins_f); Py_XDECREF(lim_f);
    return result;
}

static PyMethodDef methods[] = {
    {"spawn", spawn, METH_VARARGS, spawn_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_spawn",
    "Start a sandbox launcher with one vfork() and one execve() (see the source).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__spawn(void) { return PyModule_Create(&module); }
