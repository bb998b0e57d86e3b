"""The warm-pool zygote: runs *inside* a fresh sandbox, waits for exactly one request.

Not imported by Bastion: its source is passed to the sandbox's interpreter with `-c`, so
it uses the standard library only. It is already past interpreter start-up when a request
arrives, writes the files into its private tmpfs and points stdin at the request's input.
The zygote (pid 1 of the sandbox, so the code cannot kill it) forks at start-up, while
parked: the child warms up, then takes the request, lowers its rlimits to the request's
and runs main.py in-process (or execs another argv); the zygote only waits for that child
and reports its exit status on the status pipe.

Why the fork: the status pipe is a channel into the supervisor, so the code must never
hold it (a forged "0" would turn a failure into a success). The child closes it before
running anything, and the zygote makes itself non-dumpable first, so the code cannot
reopen it through /proc/1/fd either. Each zygote serves one execution and then its whole
sandbox is destroyed, so nothing of one execution is visible to the next.
"""

import atexit
import ctypes
import json
import os
import resource
import runpy
import sys
import traceback

_PR_SET_DUMPABLE = 4
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _read_exact(n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            os._exit(70)  # the supervisor went away before sending a request
        buf += chunk
    return buf


def _warm_up() -> None:
    """Run an empty script once, so that runpy's lazy imports (pkgutil, typing...: several
    ms) happen while parked, not on the caller's clock. Only the standard library's own
    state is left behind, identical in every zygote; no execution has run yet."""
    path = "/tmp/.zygote-warm-up.py"
    with open(path, "w") as f:
        f.write("pass\n")
    try:
        runpy.run_path(path, run_name="__zygote_warm_up__")
    finally:
        os.unlink(path)
        sys.path_importer_cache.pop(path, None)


def _serve() -> None:
    """pid 1: fork the child that will run the code now, while parked, then only report."""
    status_fd = int(sys.argv[1])
    # Non-dumpable before the fork: the child's code cannot open /proc/1/fd/<status>.
    if _prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        os._exit(71)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(status_fd)
        os.close(ready_r)
        _prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # its own /proc/self stays readable to it
        # Warming up here, after the fork, also takes the copy-on-write page faults of
        # the hot interpreter pages while parked instead of on the caller's clock.
        _warm_up()
        os.write(ready_w, b"1")
        os.close(ready_w)
        _execute()
    os.close(ready_w)
    for fd in (0, 1, 2):  # the child reads the request and writes the output, not us
        os.close(fd)
    if os.read(ready_r, 1) == b"1":
        os.write(status_fd, b"ready\n")  # the supervisor hands out only a ready zygote
    os.close(ready_r)
    _, st = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)
    # By now the child has exited, so all it wrote is in the pipes. Report, then leave
    # without the interpreter's (and the namespaces') slow teardown; the supervisor kills
    # the sandbox as soon as it has read this.
    os.write(status_fd, b"%d\n" % code)
    os._exit(0)


def _execute() -> None:
    """In the child: wait for the one request, place its files and input, run it."""
    size = int.from_bytes(_read_exact(8), "big")
    req = json.loads(_read_exact(size))
    for name, text in req["files"].items():
        d = os.path.dirname(name)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
    stdin = req["stdin"]
    with open("/tmp/.stdin", "wb") as f:
        f.write(stdin.encode("latin-1") if stdin is not None else b"")
    fd = os.open("/tmp/.stdin", os.O_RDONLY)
    os.unlink("/tmp/.stdin")
    os.dup2(fd, 0)
    os.close(fd)
    for res, value in req["rlimits"]:
        resource.setrlimit(res, (value, value))
    _run(req["argv"])


def _run(argv: "list[str] | None") -> None:
    """In the forked child: run the request's code as `python main.py` would. No return."""
    if argv is not None:
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            print(f"cannot execute {argv[0]}: {e}", file=sys.stderr)
            os._exit(127)
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)
    sys.argv = ["main.py"]
    sys.path.insert(0, os.getcwd())
    code = 0
    try:
        runpy.run_path("main.py", run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 - report like the interpreter would
        tb = e.__traceback__
        while tb is not None and not tb.tb_frame.f_code.co_filename.endswith("main.py"):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)


_serve()
