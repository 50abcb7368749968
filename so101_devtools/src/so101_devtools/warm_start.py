"""Console scripts of this venv started warm: each still runs in a process of its own, forked from a parent that has
already imported LeRobot's heavy dependencies, so a test pays LeRobot's start-up (10-15 s on a 2-core machine) once
per environment instead of once per command.

Python's `forkserver` would fit, but it runs functions, not console scripts, and its server cannot be keyed by the
environment the command must see; hence this small server. What keeps a warm command equal to a cold one:

- the parent imports only third-party modules (torch, transformers, LeRobot's own scripts) and this module, never a
  plugin or another package of this repository, so each command still finds its plugins as a fresh process does
  (LeRobot's plugin discovery runs in the child);
- a parent serves exactly one environment (LeRobot reads HF_LEROBOT_HOME, libgomp OMP_NUM_THREADS and MuJoCo
  MUJOCO_GL when they are imported): another environment gets another parent;
- the parent runs no torch operation, so no OpenMP thread pool exists when it forks;
- the child reseeds NumPy's global generator from the OS, as a fresh interpreter does (Python's own `random` reseeds
  itself after a fork), and on its way out joins its threads and runs its exit handlers, as the interpreter's
  shutdown does.

Only where SO101_WARM_START=1 (the test suite sets it); elsewhere every command runs as a plain subprocess.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

# third-party only: importing this repository's packages here would hide a plugin that a fresh process cannot find
PRELOAD = (
    "torch",
    "transformers",
    "lerobot.policies.factory",
    "lerobot.scripts.lerobot_train",
    "lerobot.scripts.lerobot_eval",
    "lerobot.scripts.lerobot_record",
    "lerobot.scripts.lerobot_rollout",
    "mujoco",
    "gymnasium",
)
VENV_BIN = Path(sys.executable).parent
KEPT_SERVERS = 2  # warm parents kept alive per test process (each holds ~1 GB until it is closed)
IGNORED = ("PYTEST_CURRENT_TEST",)  # varies per test, read by nothing at import time; the child still gets it
# appended: one file may take both streams, as a shell's `>log 2>&1` does
APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def console_entry(name: str) -> str | None:
    """`module:function` of this venv's console script `name`, or None when it is not one."""
    from importlib.metadata import entry_points

    found = entry_points(group="console_scripts", name=name)
    return next(iter(found)).value if found else None


# ----- the parent (a server reading one request per line) --------------------------------------------------------
def _exit_code(value: object) -> int:
    """What the interpreter makes of `sys.exit(value)`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _run_child(request: dict, started: dict[str, str], imported: dict[str, str]) -> None:
    """In the forked child: become the command (its cwd, environment, argv, stdio), run it, exit as it would. The
    variables the parent's imports set (`started` -> `imported`) are set as the command's own imports would have."""
    code = 1
    try:
        os.chdir(request["cwd"])
        env = dict(request["env"])
        env.update({k: v for k, v in imported.items() if started.get(k) != v and env.get(k) == started.get(k)})
        os.environ.clear()
        os.environ.update(env)
        streams = ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], APPEND), (2, request["stderr"], APPEND))
        for fd, path, flags in streams:
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = request["argv"]
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        module, _, function = request["entry"].partition(":")
        code = _exit_code(getattr(importlib.import_module(module), function)())
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())  # as the interpreter reports an uncaught exception (a command may set it)
        code = -signal.SIGINT if isinstance(sys.exc_info()[1], KeyboardInterrupt) else 1
    finally:
        try:
            import threading

            threading._shutdown()  # the interpreter's own shutdown waits for non-daemon threads first
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            if code == -signal.SIGINT:  # the interpreter ends an uncaught Ctrl-C by that signal
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
            os._exit(code)


def serve() -> None:
    """Import PRELOAD, then for each request line fork a child that runs it; answer its pid, then its exit code."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the imports print goes to the server's log, not into the answers
    started = dict(os.environ)
    for name in PRELOAD:
        importlib.import_module(name)
    imported = dict(os.environ)
    answers.write(json.dumps({"environ": dict(os.environ)}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            answers.close()
            _run_child(request, started, imported)
        answers.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


# ----- the client -------------------------------------------------------------------------------------------------
class _Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "so101_devtools.warm_start"],
                # from the venv's bin: `-m` puts its folder first on sys.path, as a console script's own folder is
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, bufsize=0, cwd=VENV_BIN,
            )  # fmt: skip
        self.pending = b""
        # the environment once its imports ran (MuJoCo sets PYOPENGL_PLATFORM, OpenCV LD_LIBRARY_PATH): a test
        # process that imported the same libraries asks in that one
        self.environ = self.answer(timeout=600)["environ"]

    def answer(self, timeout: float | None) -> dict | None:
        """The server's next answer line; None when `timeout` seconds pass first."""
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the warm-start server stopped; its log: {self.log.read_text()[-3000:]}")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_servers: OrderedDict[tuple, _Server] = OrderedDict()
_logs: list[str] = []  # the folder of this process's server logs, made with the first server
_started: list[dict[str, str]] = []  # the environment each server of this process was started in


def _key(env: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in env.items() if k not in IGNORED))


def _server_for(env: dict[str, str]) -> _Server:
    """The warm parent serving `env`: started in it, or in the environment its imports left."""
    key = _key(env)
    for kept, server in _servers.items():
        if key in (kept, _key(server.environ)):
            _servers.move_to_end(kept)
            return server
    while len(_servers) >= KEPT_SERVERS:
        _servers.popitem(last=False)[1].close()
    if not _logs:
        _logs.append(tempfile.mkdtemp(prefix="so101_warm_start_"))
    log = Path(_logs[0]) / f"server_{len(_started)}.log"
    if _started:  # why another parent: what differs from the last one's environment
        last = _started[-1]
        changed = sorted(k for k in {*env, *last} if k not in IGNORED and env.get(k) != last.get(k))
        log.with_suffix(".why").write_text("\n".join(changed) + "\n")
    _started.append(dict(env))
    _servers[key] = _Server(env, log)
    return _servers[key]


@atexit.register
def _close_all() -> None:
    while _servers:
        _servers.popitem()[1].close()


def enabled() -> bool:
    """Whether commands start warm: SO101_WARM_START=1, which the test suite sets; plain subprocesses otherwise."""
    return os.environ.get("SO101_WARM_START") == "1"


class Started:
    """A command running in a child of a warm parent."""

    def __init__(self, server: _Server, pid: int, argv: list[str]) -> None:
        self.server, self.pid, self.argv = server, pid, argv

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit code, or None when `timeout` seconds pass first."""
        done = self.server.answer(timeout)
        return None if done is None else done["returncode"]

    def kill(self) -> int:
        os.kill(self.pid, signal.SIGKILL)
        return self.wait(timeout=60)

    def abandon(self) -> None:
        """Stop the command and its parent, whose answers would otherwise come out of step (the caller was
        interrupted while the command ran); the next command in that environment starts a new parent."""
        for pid in (self.pid, self.server.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for key in [k for k, v in _servers.items() if v is self.server]:
            del _servers[key]


def start(argv: list[str], cwd: Path, env: dict[str, str], stdout: Path, stderr: Path, entry: str | None = None):
    """Start the console script argv[0] of this venv (or the function `entry`, `module:function`, as the script
    argv[0] would run it) in a child of the warm parent serving `env`, its output appended to `stdout` and `stderr`
    (one file may be both); None when argv[0] is no console script of this venv."""
    if entry is None and Path(argv[0]).parent == VENV_BIN:
        entry = console_entry(Path(argv[0]).name)
    if entry is None:
        return None
    server = _server_for(env)
    request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "env": env, "entry": entry,
               "stdout": str(stdout), "stderr": str(stderr)}  # fmt: skip
    server.proc.stdin.write((json.dumps(request) + "\n").encode())
    return Started(server, server.answer(timeout=60)["pid"], argv)


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float, entry: str | None = None):
    """`subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)`, started warm when
    `enabled()` and argv[0] is a console script of this venv (or `entry` is given, as in `start`)."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        started = start(argv, cwd, env, out, err, entry) if enabled() or entry else None
        if started is None:
            return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        try:
            code = started.wait(timeout)
        except BaseException:
            started.abandon()
            raise
        said = [p.read_text(errors="replace") if p.exists() else "" for p in (out, err)]
        if code is None:
            started.kill()
            raise subprocess.TimeoutExpired(argv, timeout, output=said[0], stderr=said[1])
    return subprocess.CompletedProcess(argv, code, stdout=said[0], stderr=said[1])


if __name__ == "__main__":
    serve()
