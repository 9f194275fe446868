"""The recorder: a child process that does the work a run needs no torch for, while the run trains.

MLflow, matplotlib and onnxruntime take seconds to import, and their work (the store, figures, the
export check, model logging) would otherwise queue behind training in one interpreter. The
recorder does it beside training: it imports them while the training process imports torch, and
takes calls, in order, while the epochs run. A call names its function as "module:function" and
passes plain values, so the training process never imports those modules (the boundary is listed
in docs/architecture.md). `submit` returns at once; `Call.result()` and `wait()` block, and
re-raise the recorder's errors here with its traceback as their cause.

Ctrl-C reaches only the training process (the recorder runs in its own session), which then tells
the recorder how the run ended and waits for it. A training process that dies (SIGKILL) closes the
pipe: the recorder finishes the calls it received and exits. Nothing outlives the command.
`Inline` has the same interface for runs with nothing to do in the background: calls run at once.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import importlib
import os
import pickle
import secrets
import signal
import subprocess
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Client, Connection, Listener
from typing import TYPE_CHECKING, Any

from sweeplab.errors import typed_line
from sweeplab.hydra_job import HydraJob

if TYPE_CHECKING:
    from omegaconf import DictConfig

# What the recorder prepares while it waits for calls: MLflow's side of a run, the export check.
TRACKING_MODULES = ("sweeplab.tracking.session", "sweeplab.tracking.sweep", "sweeplab.tracking.session:warm_up")
EXPORT_MODULES = ("sweeplab.export.verify",)

NOT_YET = object()
# How the child finds its parent: the address to connect to, the key that proves it, what to prepare.
ADDRESS_ENV, KEY_ENV, WARM_UP_ENV = "SWEEPLAB_RECORDER_ADDRESS", "SWEEPLAB_RECORDER_KEY", "SWEEPLAB_RECORDER_WARM_UP"


class RemoteTraceback(Exception):
    """The recorder's traceback, attached as the cause of an error re-raised in the training process."""


class Call:
    """A submitted call: its value or error once the recorder answered."""

    def __init__(self, owner: Recorder | Inline, target: str):
        self.owner = owner
        self.target = target
        self.value: Any = NOT_YET
        self.error: BaseException | None = None
        self.seen = False  # its error was raised to someone: wait() does not raise it again

    def result(self) -> Any:
        self.owner.wait_for(self)
        self.seen = True
        if self.error is not None:
            raise self.error
        return self.value


class Inline:
    """The recorder's interface, run in this process: for runs with no tracking and no export."""

    def __init__(self) -> None:
        self.failed: list[Call] = []

    def submit(self, target: str, *args: Any) -> Call:
        call = Call(self, target)
        try:
            call.value = resolve(target)(*args)
        except Exception as error:
            call.error = error
            self.failed.append(call)
        return call

    def wait_for(self, call: Call) -> None:
        """Inline calls are done when submitted."""

    def wait(self, raise_errors: bool = True) -> list[BaseException]:
        return _unseen_errors(self.failed, raise_errors)

    def close(self) -> None:
        self.wait()


class Recorder:
    """The child process and the calls it has not answered yet, oldest first.

    A fresh interpreter (`python -m sweeplab.background`), not a multiprocessing child: it starts the
    same from any parent (a joblib or submitit worker, a notebook) and is safe with threads and CUDA.
    It runs in its own session, so a Ctrl-C in the terminal reaches only the training process. The two
    talk over a loopback connection; the child's first message is a key only it was given, checked
    before anything it sends is unpickled.
    """

    def __init__(self, warm_up: Sequence[str] = ()):
        self.key = secrets.token_bytes(32)
        self.listener = Listener(("127.0.0.1", 0))
        host, port = self.listener.address
        env = {**os.environ, ADDRESS_ENV: f"{host}:{port}", KEY_ENV: self.key.hex(), WARM_UP_ENV: ",".join(warm_up)}
        self.process = subprocess.Popen([sys.executable, "-m", "sweeplab.background"], env=env,
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

    def submit(self, target: str, *args: Any) -> Call:
        call = Call(self, target)
        with _sigint_deferred():  # a Ctrl-C mid-message would corrupt the connection
            self.connection.send((target, args))
        self.pending.append(call)
        return call

    def wait_for(self, call: Call | None) -> None:
        """Take answers, in order, until `call` (None: every call) is answered."""
        while self.pending and (call is None or call.value is NOT_YET and call.error is None):
            with _sigint_deferred():  # a Ctrl-C now arrives once this answer is read and filed
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
        return _unseen_errors(self.failed, raise_errors)

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


def _unseen_errors(failed: list[Call], raise_errors: bool) -> list[BaseException]:
    unseen = [call for call in failed if not call.seen]
    for call in unseen:
        call.seen = True
    failed.clear()
    if unseen and raise_errors:
        raise unseen[0].error  # type: ignore[misc]
    return [call.error for call in unseen]  # type: ignore[misc]


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until a message is wholly written or read (it then arrives as usual)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def resolve(target: str) -> Callable:
    """"sweeplab.module:function" -> the function; nothing outside sweeplab is called by name."""
    module, _, name = target.partition(":")
    if not module.startswith("sweeplab."):
        raise ValueError(f"the recorder only runs sweeplab's functions, not {target}")
    return getattr(importlib.import_module(module), name)


def serve(connection: Connection, warm_up: tuple[str, ...]) -> None:
    """The child's process: answer calls until told to stop (or the training process is gone), then exit at once.

    Its work is done by then (every answer sent, every file closed); tearing down mlflow, SQLAlchemy
    and matplotlib's interpreter state would only keep the command waiting for a second.
    """
    try:
        answer_calls(connection, warm_up)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def answer_calls(connection: Connection, warm_up: tuple[str, ...]) -> None:
    """Answer each call in order; whenever idle, prepare what `warm_up` names (see `warm`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # where there are no sessions (Windows), Ctrl-C reaches us too
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


def warm(target: str) -> None:
    """Import a module ("module"), or call a function that prepares one ("module:function")."""
    if ":" in target:
        resolve(target)()
    else:
        importlib.import_module(target)


def _answer(target: str, args: tuple) -> tuple[bool, Any, str | None]:
    try:
        return True, resolve(target)(*args), None
    except Exception as error:
        remote = traceback.format_exc()
        try:
            pickle.dumps(error)
        except Exception:  # an error type that cannot travel: its type and message can
            error = RuntimeError(typed_line(error))
        return False, error, remote


_recorder: Recorder | Inline | None = None


def recorder(in_background: bool, warm_up: Sequence[str] = ()) -> Recorder | Inline:
    """This process's recorder: started on first need, shared by the runs of a sequential sweep, closed at exit."""
    global _recorder
    if in_background and not isinstance(_recorder, Recorder):
        if _recorder is not None:
            _recorder.close()
        _recorder = Recorder(warm_up)
        atexit.register(_recorder.close)
    elif _recorder is None:
        _recorder = Inline()
    return _recorder


def job_recorder(cfg: DictConfig, job: HydraJob) -> Recorder | Inline:
    """A child process when the run has tracking or an export to check (a sweep's, at its end), else Inline.

    Started by the Hydra main before it imports torch, so the two processes import side by side.
    """
    exports = cfg.export.onnx and (not job.multirun or job.in_launching_process)
    modules = (TRACKING_MODULES if cfg.tracking.enabled else ()) + (EXPORT_MODULES if exports else ())
    return recorder(bool(modules), modules)


def connect() -> Connection:
    """The recorder's side of the connection: connect, then prove it is the process the key was given to."""
    address, port = os.environ[ADDRESS_ENV].rsplit(":", 1)
    connection = Client((address, int(port)))
    connection.send_bytes(bytes.fromhex(os.environ[KEY_ENV]))
    return connection


if __name__ == "__main__":  # the recorder process (Recorder starts it), run by the module proper, not this copy
    from sweeplab import background

    background.serve(background.connect(), tuple(filter(None, os.environ[WARM_UP_ENV].split(","))))
