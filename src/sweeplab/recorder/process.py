"""The recorder process: a fresh interpreter (`python -m sweeplab.recorder`) that answers calls in order.

The training process side (`Recorder`) starts it, sends calls and reads the answers; the child side
(`serve`) imports what the calls name, prepares what it is told to while idle, and exits at once when
told to stop or when the training process is gone.

A parallel sweep's jobs on the same machine (joblib's, submitit_local's, a local Ray's workers) share the
launching process's recorder rather than each starting one (MLflow's imports are seconds of CPU a process, and
one process writes the store): its address is in their environment (SHARED_ENV) and each job process joins it
as a client of its own connection, answered in its own order. A job that cannot reach it (another node) starts
its own.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import pickle
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener, wait
from typing import Any

import psutil

from sweeplab.core.errors import typed_line
from sweeplab.core.interrupts import INTERRUPTS
from sweeplab.core.vocabulary import PENDING_FILE
from sweeplab.recorder.calls import NOT_YET, Call, RecorderGone, RemoteTraceback, resolve, unseen_errors
from sweeplab.recorder.remote import Remote

# How the child finds its parent: the address to connect to, the key that proves it, what to prepare.
ADDRESS_ENV, KEY_ENV, WARM_UP_ENV = "SWEEPLAB_RECORDER_ADDRESS", "SWEEPLAB_RECORDER_KEY", "SWEEPLAB_RECORDER_WARM_UP"
SHARED_ENV = "SWEEPLAB_RECORDER_SHARED"  # host:port:key of a sweep's recorder, for its jobs to join
TICK_SECONDS = 0.5  # how often a wait for an answer looks whether the recorder can still give one
IDLE_SECONDS = 0.05  # how often an idle recorder looks for jobs joining it
BUSY_SHARE = 0.1  # a recorder that used more of a core than this since the last look is working
LOOK_SECONDS = 0.25  # how often its CPU time is read


class Recorder:
    """Calls to a recorder over one connection, and those it has not answered yet, oldest first.

    `started` starts a child process of its own: a fresh interpreter, not a multiprocessing child, so it starts
    the same from any parent (a joblib or submitit worker, a notebook) and is safe with threads and CUDA. It runs
    in its own session, so a Ctrl-C in the terminal reaches only the training process. The two talk over a
    loopback connection; the child's first message is a key only it was given, checked before anything it sends
    is unpickled. `joined` connects to another process's recorder (a parallel sweep's jobs to its launcher's).
    """

    def __init__(self, connect: Callable[[], Connection], process: subprocess.Popen | None = None,
                 key: bytes = b""):
        self.connect, self.process, self.key = connect, process, key
        self._connection: Connection | None = None  # made on first use: the child starts meanwhile
        self.shared: str | None = None  # where jobs join it: host:port (a started recorder's, once connected)
        self.pending: deque[Call] = deque()
        self.failed: list[Call] = []
        self.lost: str | None = None  # why it is gone: its calls from then on are kept for the run to deal with
        self.unsent: list[Call] = []  # calls it never answered (it died, or did not answer a stop in time)
        self.cpu_look: tuple[float, float, bool] | None = None  # the child's CPU seconds, the time, the verdict

    @classmethod
    def started(cls, warm_up: Sequence[Remote] = ()) -> Recorder:
        key = secrets.token_bytes(32)
        listener = Listener(("127.0.0.1", 0))
        host, port = listener.address
        env = {**os.environ, ADDRESS_ENV: f"{host}:{port}", KEY_ENV: key.hex(),
               WARM_UP_ENV: ",".join(target.value for target in warm_up)}
        process = subprocess.Popen([sys.executable, "-m", "sweeplab.recorder"], env=env, start_new_session=True)
        return cls(lambda: accepted_child(listener, key), process, key)

    @classmethod
    def joined(cls, shared: str) -> Recorder | None:
        """A client of the recorder at `shared` (SHARED_ENV's form); None where it cannot be reached."""
        host, port, key = shared.rsplit(":", 2)
        try:
            connection = Client((host, int(port)), authkey=bytes.fromhex(key))
        except (OSError, AuthenticationError):
            return None
        return cls(lambda: connection)

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self.connect()
            if self.process is not None:  # the child says where jobs may join it
                self.shared = self._connection.recv()
        return self._connection

    def sharing(self) -> str:
        """SHARED_ENV's value for this recorder: where a sweep's jobs join it, and the key they need."""
        self.connection  # noqa: B018 - connected, the child has said its address
        return f"{self.shared}:{self.key.hex()}"

    def submit(self, target: Remote, *args: Any) -> Call:
        call = Call(self, target, args)
        self.pending.append(call)
        if self.lost is None:
            try:
                with _interrupts_deferred():  # a Ctrl-C mid-message would corrupt the connection
                    self.connection.send((target, args))
            except (OSError, EOFError):  # a broken pipe: it died (killed, out of memory)
                self.lose(f"the recorder process died ({self.exit_status()})")
        if self.lost is not None:
            self.lose(self.lost)
        return call

    def busy(self) -> bool:
        """Whether it is working: on calls (the answers that arrived are read, without waiting), or, where this
        process started it, on anything since the last look (its imports and warm-up, which no call waits for)."""
        while self.pending and self.connection.poll():
            with _interrupts_deferred():
                self._take_answer()
        return bool(self.pending) or self.computing()

    def computing(self) -> bool:
        """Whether the child used more than BUSY_SHARE of a core since the last look (since it started, at the
        first), looking at most every LOOK_SECONDS: CPU time is counted in 10 ms ticks."""
        now = time.time()
        if self.process is None or (self.cpu_look is not None and now - self.cpu_look[1] < LOOK_SECONDS):
            return self.cpu_look is not None and self.cpu_look[2]
        try:
            child = psutil.Process(self.process.pid)
            used = sum(child.cpu_times()[:2])
            before_used, before, _ = self.cpu_look or (0.0, child.create_time(), False)
        except psutil.Error:  # gone: the next call says so
            return False
        self.cpu_look = used, now, used - before_used > BUSY_SHARE * (now - before)
        return self.cpu_look[2]

    def wait_for(self, call: Call | None, timeout: float | None = None) -> None:
        """Take answers, in order, until `call` (None: every call) is answered. Given up, its calls kept as unsent,
        when the recorder is stopped (SIGSTOP) or gone, or after `timeout` seconds (a run being stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending and (call is None or call.value is NOT_YET and call.error is None):
            if self.connection.poll(TICK_SECONDS):
                with _interrupts_deferred():  # a Ctrl-C now arrives once this answer is read and filed
                    self._take_answer()
            elif self.halted():
                self.abandon("the recorder process was stopped")
            elif deadline is not None and time.monotonic() >= deadline:
                self.abandon(f"the recorder did not answer within {timeout:g} s")

    def halted(self) -> bool:
        """A started recorder that can no longer answer: stopped (SIGSTOP, a debugger) or a zombie."""
        if self.process is None:
            return False
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.process.pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
        return False

    def _take_answer(self) -> None:
        try:
            ok, value, remote = self.connection.recv()
        except (EOFError, OSError):
            self.lose(f"the recorder process died ({self.exit_status()})")
            return
        done = self.pending.popleft()
        done.args = ()  # answered: nothing to keep
        if ok:
            done.value = value
        else:
            done.error = value
            done.error.__cause__ = RemoteTraceback(remote)
            self.failed.append(done)

    def wait(self, raise_errors: bool = True, timeout: float | None = None) -> list[BaseException]:
        """Block until every call so far is done (or `timeout` seconds pass without an answer); raise (or return)
        the errors nobody has seen yet."""
        self.wait_for(None, timeout)
        return unseen_errors(self.failed, raise_errors)

    def lose(self, reason: str) -> None:
        """It is gone: every call not answered fails (RecorderGone), once, and is kept for the run to deal with."""
        self.lost = reason
        gone = RecorderGone(f"{reason}: what it had not recorded is kept in the run dir's {PENDING_FILE}, which "
                            "the run delivers when it resumes")
        for call in self.pending:
            call.error = gone
            self.failed.append(call)
            self.unsent.append(call)
        self.pending.clear()

    def abandon(self, reason: str) -> None:
        """Stop waiting for it: a started recorder is killed (a joined one is another process's to end)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(OSError):
            self.connection.close()
        self.lose(reason)

    def exit_status(self) -> str:
        code = self.process.wait() if self.process is not None else None
        return f"exit code {code}" if code is not None else "its connection closed"

    def undelivered(self) -> list[Call]:
        """The calls it never answered, taken: the run records what it can of them elsewhere."""
        calls, self.unsent = self.unsent, []
        return calls

    def close(self) -> None:
        """Wait for every call; then a started recorder's child exits, a joined one forgets this client."""
        if self.lost is None and (self.process is None or self.process.poll() is None):
            try:
                self.wait_for(None)
            finally:
                with contextlib.suppress(OSError):
                    self.connection.send(None)
                if self.process is not None:
                    self.process.wait()
        if self._connection is not None:
            self._connection.close()


def accepted_child(listener: Listener, key: bytes) -> Connection:
    """The child's connection, once it proved it holds the key."""
    connection = listener.accept()
    listener.close()
    if not hmac.compare_digest(connection.recv_bytes(), key):
        connection.close()
        raise RuntimeError("a process other than the recorder connected to the recorder's port")
    return connection


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C or SIGTERM until a message is wholly written or read (it then arrives as usual)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)


def serve(connection: Connection, jobs: Listener, warm_up: tuple[Remote, ...]) -> None:
    """The child's process: answer calls until told to stop, then exit at once.

    Its work is done by then (every answer sent, every file closed); tearing down mlflow, SQLAlchemy
    and matplotlib's interpreter state would only keep the command waiting for a second. If the training
    process dies (SIGKILL), the recorder goes with it, within a tenth of a second, whatever it was doing:
    what it had not recorded yet is recorded again when the run resumes.
    """
    threading.Thread(target=exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    joining: queue.SimpleQueue[Connection] = queue.SimpleQueue()
    threading.Thread(target=accept_jobs, args=(jobs, joining), daemon=True).start()
    try:
        answer_calls(connection, joining, warm_up)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(1)


def accept_jobs(jobs: Listener, joining: queue.SimpleQueue) -> None:
    """Jobs joining this recorder (their key checked by the listener before anything is unpickled)."""
    while True:
        with contextlib.suppress(OSError, EOFError, AuthenticationError):  # a stranger, or a job gone at once
            joining.put(jobs.accept())


def answer_calls(owner: Connection, joining: queue.SimpleQueue, warm_up: tuple[Remote, ...]) -> None:
    """Answer each connection's calls in its order until the owner (the process that started it) says stop or is
    gone; whenever idle, prepare what `warm_up` names (see `warm`). A job's connection ends with its process."""
    # The training process tells it when to stop: a Ctrl-C (where there are no sessions: Windows) or a SIGTERM to
    # every process of a job (Slurm's) would cut the run's last records.
    for interrupt in INTERRUPTS:
        signal.signal(interrupt, signal.SIG_IGN)
    waiting, connections = list(warm_up), [owner]
    while True:
        while not joining.empty():
            connections.append(joining.get())
        ready = wait(connections, timeout=0 if waiting else IDLE_SECONDS)
        if not ready and waiting:
            with contextlib.suppress(Exception):  # an import that fails will fail again, in the call that needs it
                warm(waiting.pop(0))
        for connection in ready:
            message = received(connection)
            if message is None and connection is owner:
                return
            if message is None:
                connections.remove(connection)
                connection.close()
            else:
                connection.send(_answer(*message))


def received(connection: Connection) -> tuple | None:
    """The next call; None when the other side said stop or is gone."""
    try:
        return connection.recv()
    except (EOFError, OSError):
        return None


def warm(target: Remote) -> None:
    """Import the entry's module; call it too if it is a preparation (WARM_UP_...)."""
    function = resolve(target)
    if target.name.startswith("WARM_UP_"):
        function()


def _answer(target: Remote, args: tuple) -> tuple[bool, Any, str | None]:
    try:
        return True, resolve(target)(*args), None
    except Exception as error:
        remote = traceback.format_exc()
        try:
            pickle.dumps(error)
        except Exception:  # an error type that cannot travel: its type and message can
            error = RuntimeError(typed_line(error))
        return False, error, remote


def connect() -> tuple[Connection, Listener]:
    """The recorder's side: connect, prove it is the process the key was given to, and open the port a sweep's
    jobs join it on (the same key), whose address it tells its owner."""
    address, port = os.environ[ADDRESS_ENV].rsplit(":", 1)
    key = bytes.fromhex(os.environ[KEY_ENV])
    connection = Client((address, int(port)))
    connection.send_bytes(key)
    jobs = Listener(("127.0.0.1", 0), authkey=key)
    host, port = jobs.address
    connection.send(f"{host}:{port}")
    return connection, jobs
