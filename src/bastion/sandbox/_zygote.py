"""The warm-pool zygote: runs *inside* a fresh sandbox, waits for exactly one request.

Not imported by Bastion: its source is passed to the sandbox's interpreter with `-c`, so
it uses the standard library only. It is already past interpreter start-up when a request
arrives, writes the files into its private tmpfs, lowers its rlimits to the request's,
points stdin at the request's input and runs main.py in-process (or execs another argv).
Each zygote serves one execution and then its whole sandbox is destroyed, so nothing of
one execution is visible to the next.
"""

import atexit
import json
import os
import resource
import runpy
import sys
import traceback


def _read_exact(n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            os._exit(70)  # the supervisor went away before sending a request
        buf += chunk
    return buf


def _serve() -> None:
    os.write(1, b"\x01")  # ready: the supervisor waits for this byte before handing out
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
    status_fd = int(sys.argv[1])
    os.set_inheritable(status_fd, False)  # an exec'd argv must not report for us
    argv = req["argv"]
    if argv is not None:
        os.execvp(argv[0], argv)
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
    os.close(1)
    os.close(2)
    # Report, then leave without the interpreter's (and the namespaces') slow teardown;
    # the supervisor kills the sandbox as soon as it has read this and both EOFs.
    os.write(status_fd, b"%d\n" % (code & 0xFF))
    os._exit(code & 0xFF)


_serve()
