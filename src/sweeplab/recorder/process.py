"""The recorder process: a fresh interpreter (`python -m sweeplab.recorder`) that answers calls in order.

The training process side (`Recorder`) starts it, sends calls and reads the answers; the child side
(`serve`) imports what the calls name, prepares what it is told to while idle, and exits at once when
told to stop or when the training process is gone.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import pickle
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from sweeplab.core.errors import typed_line
from sweeplab.core.interrupts import INTERRUPTS
from sweeplab.recorder.calls import NOT_YET, Call, RemoteTraceback, resolve, unseen_errors
from sweeplab.recorder.remote import Remote

# How the child finds its parent: the address to connect to, the key that proves it, what to prepare.
ADDRESS_ENV, KEY_ENV, WARM_UP_ENV = "SWEEPLAB_RECORDER_ADDRESS", "SWEEPLAB_RECORDER_KEY", "SWEEPLAB_RECORDER_WARM_UP"


class Recorder:
    """The child process and the calls it has not answered yet, oldest first.

    A fresh interpreter, not a multiprocessing child: it starts the
    same from any parent (a joblib or submitit worker, a notebook) and is safe with threads and CUDA.
    It runs in its own session, so a Ctrl-C in the terminal reaches only the training process. The two
    talk over a loopback connection; the child's first message is a key only it was given, checked
    before anything it sends is unpickled.
    """

    def __init__(self, warm_up: Sequence[Remote] = ()):
        self.key = secrets.token_bytes(32)
        self.listener = Listener(("127.0.0.1", 0))
        host, port = self.listener.address
        env = {**os.environ, ADDRESS_ENV: f"{host}:{port}", KEY_ENV: self.key.hex(),
               WARM_UP_ENV: ",".join(target.value for target in warm_up)}
        self.process = subprocess.Popen([sys.executable, "-m", "sweeplab.recorder"], env=env,
                                        start_new_session=True)
        self._connection: Connection | None = None  # accepted on first use: the child starts meanwhile
        self.pending: deque[Call] = deque()
        self.failed: list[Call] = []

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            connection = self.listener.accept()
            self.listener.close()
            if not hmac.compare_digest(connection.recv_bytes(), self.key):
                connection.close()
                raise RuntimeError("a process other than the recorder connected to the recorder's port")
            self._connection = connection
        return self._connection

    def submit(self, target: Remote, *args: Any) -> Call:
        call = Call(self, target)
        with _interrupts_deferred():  # a Ctrl-C mid-message would corrupt the connection
            self.connection.send((target, args))
        self.pending.append(call)
        return call

    def busy(self) -> bool:
        """Whether it is still working on calls (the answers that arrived are read, without waiting)."""
        while self.pending and self.connection.poll():
            with _interrupts_deferred():
                self._take_answer()
        return bool(self.pending)

    def wait_for(self, call: Call | None) -> None:
        """Take answers, in order, until `call` (None: every call) is answered."""
        while self.pending and (call is None or call.value is NOT_YET and call.error is None):
            with _interrupts_deferred():  # a Ctrl-C now arrives once this answer is read and filed
                self._take_answer()

    def _take_answer(self) -> None:
        try:
            ok, value, remote = self.connection.recv()
        except EOFError:
            code = self.process.wait()
            raise RuntimeError(f"the recorder process died (exit code {code}) before answering") from None
        done = self.pending.popleft()
        if ok:
            done.value = value
        else:
            done.error = value
            done.error.__cause__ = RemoteTraceback(remote)
            self.failed.append(done)

    def wait(self, raise_errors: bool = True) -> list[BaseException]:
        """Block until every call so far is done; raise (or return) the errors nobody has seen yet."""
        self.wait_for(None)
        return unseen_errors(self.failed, raise_errors)

    def close(self) -> None:
        """Wait for every call, then let the child exit."""
        if self.process.poll() is None:
            try:
                self.wait_for(None)
            finally:
                with contextlib.suppress(OSError):
                    self.connection.send(None)
                self.process.wait()
        if self._connection is not None:
            self._connection.close()


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


def serve(connection: Connection, warm_up: tuple[Remote, ...]) -> None:
    """The child's process: answer calls until told to stop, then exit at once.

    Its work is done by then (every answer sent, every file closed); tearing down mlflow, SQLAlchemy
    and matplotlib's interpreter state would only keep the command waiting for a second. If the training
    process dies (SIGKILL), the recorder goes with it, within a tenth of a second, whatever it was doing:
    what it had not recorded yet is recorded again when the run resumes.
    """
    threading.Thread(target=exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        answer_calls(connection, warm_up)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(1)


def answer_calls(connection: Connection, warm_up: tuple[Remote, ...]) -> None:
    """Answer each call in order; whenever idle, prepare what `warm_up` names (see `warm`)."""
    # The training process tells it when to stop: a Ctrl-C (where there are no sessions: Windows) or a SIGTERM to
    # every process of a job (Slurm's) would cut the run's last records.
    for interrupt in INTERRUPTS:
        signal.signal(interrupt, signal.SIG_IGN)
    waiting = list(warm_up)
    while True:
        while waiting and not connection.poll():
            with contextlib.suppress(Exception):  # an import that fails will fail again, in the call that needs it
                warm(waiting.pop(0))
        try:
            message = connection.recv()
        except EOFError:  # the training process is gone
            return
        if message is None:
            return
        target, args = message
        connection.send(_answer(target, args))


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


def connect() -> Connection:
    """The recorder's side of the connection: connect, then prove it is the process the key was given to."""
    address, port = os.environ[ADDRESS_ENV].rsplit(":", 1)
    connection = Client((address, int(port)))
    connection.send_bytes(bytes.fromhex(os.environ[KEY_ENV]))
    return connection
