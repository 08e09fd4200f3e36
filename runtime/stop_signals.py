"""Ctrl-C and SIGTERM, heard by the process they are meant for, in every process `make run` starts.

Python runs a signal's handler only in the main thread, and only once that thread runs again; the kernel
hands a process's signal to any of its threads that does not block it. granian's main thread (in the
server and in each worker) sleeps until its handler has run, so a signal that landed on another thread
(granian's own, the log thread) was heard late or never: a worker never stopped, or the server, woken by a
worker that had stopped by itself, took it for a crash and exited 1. Here every thread blocks the two
signals, and one thread takes each and calls the handler the process installed.
"""

from __future__ import annotations

import _thread
import os
import select
import signal
import sys
import threading
import time

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
PARENT_GRACE_SECONDS = 2.0


def relay_stop_signals(only_from_parent: bool = False) -> None:
    """Block SIGINT and SIGTERM in this thread and every thread started after, and relay them to the handler.

    With `only_from_parent`, the process stops when its parent tells it to, not when Ctrl-C reaches the whole
    group: a worker that stopped by itself before the server had marked it as stopping was taken for a
    crash. Two signals that arrive together are merged into one by the kernel, so the parent's may be lost
    in the group's: a signal from anyone else stops the process after PARENT_GRACE_SECONDS all the same.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if only_from_parent:
        _until_ready.clear()
    parent = os.getppid() if only_from_parent else None
    threading.Thread(target=_relay, args=(parent,), name="stop-signal-relay", daemon=True).start()


# serve.py's process id, which it gives every process it starts: a child that asked its parent only once it had
# loaded could be asking after serve.py died, and would watch whoever adopted it.
SERVER_PID_VARIABLE = "VOICE_SERVER_PID"


def mark_server_process() -> None:
    """Called by serve.py: the processes it starts from now on watch this one."""
    os.environ[SERVER_PID_VARIABLE] = str(os.getpid())


def stop_when_parent_exits(stop=None) -> None:
    """Stop this process once serve.py (or, outside it, the parent) is gone, however it ended (kill -9 included):
    by calling `stop`, or else as the parent's SIGTERM would. Gone already: stopped now."""
    stop = stop or (lambda: _call_handler(signal.SIGTERM))
    server = os.environ.get(SERVER_PID_VARIABLE, "")
    parent = int(server) if server.isdigit() else os.getppid()
    try:
        watched = os.pidfd_open(parent)
    except ProcessLookupError:
        watched = None
    except OSError:
        return  # a kernel without pidfd (before 5.3): the parent's own stop is the only one
    threading.Thread(target=_stop_after, args=(watched, stop), name="parent-watch", daemon=True).start()


def _stop_after(watched: int | None, stop) -> None:
    if watched is not None:
        select.select([watched], [], [])  # a pidfd becomes readable when its process has exited
        os.close(watched)
    stop()


def _relay(parent: int | None) -> None:
    stop_at = None  # when a signal from outside stops the process if its parent has not by then
    while True:
        if stop_at is None:
            received = signal.sigwaitinfo(STOP_SIGNALS)
        else:
            received = signal.sigtimedwait(STOP_SIGNALS, max(0.0, stop_at - time.monotonic()))
        if received is None:
            stop_at = None
            _call_handler(signal.SIGTERM)
        elif parent is not None and received.si_pid != parent:
            stop_at = stop_at or time.monotonic() + PARENT_GRACE_SECONDS
        else:
            stop_at = None
            _call_handler(received.si_signo)


# Cleared in a worker until its server has installed its handlers (handlers_ready): a stop that comes while the
# worker is still loading the app is kept for then, or it would be heard by nobody and the worker killed later.
_until_ready = threading.Event()
_until_ready.set()
_kept: list[int] = []
_kept_lock = threading.Lock()


def handlers_ready() -> None:
    """The process's own handlers are installed: hand them any stop that came before."""
    with _kept_lock:
        _until_ready.set()
        kept, _kept[:] = list(_kept), []
    for signal_number in kept[:1]:
        _call_handler(signal_number)


def _call_handler(signal_number: int) -> None:
    with _kept_lock:
        if not _until_ready.is_set():
            _kept.append(signal_number)
            return
    handler = signal.getsignal(signal_number)
    if getattr(handler, "__module__", "").startswith(("asyncio", "uvloop")):
        # An event loop's handler (loop.add_signal_handler: granian's RSGI workers). The Python-level handler is
        # a placeholder; the loop hears the signal through the interpreter's wakeup descriptor, which only the
        # signal itself writes: raise it in this thread, unblocked here for that moment only.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal_number})
        try:
            signal.raise_signal(signal_number)
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal_number})
    elif callable(handler) and handler is not signal.default_int_handler:
        handler(signal_number, None)
    else:
        # No handler of the process's own yet (it is still starting): stop it as Ctrl-C would.
        _thread.interrupt_main()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts). A zombie does not: killed,
    its parent gone too, it can linger unreaped where nothing reaps orphans (a container's first process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def child_of_the_server():
    """Set up a process serve.py starts beside its workers (the writer, the background jobs), and return the settings
    it runs on (serve.py's, handed over); None after printing the one line that says why they cannot be read.

    The signals a terminal or a service manager sends the whole group are serve.py's, which stops its children
    itself, in order: here they are ignored."""
    from config import ConfigError, load_settings
    from runtime.logs import configure_logging

    for group_signal in STOP_SIGNALS:
        signal.signal(group_signal, signal.SIG_IGN)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    configure_logging(settings.log_format, settings.no_color)
    return settings


def when_stdin_closes(stop) -> None:
    """Call `stop` once standard input closes: serve.py closed it, or serve.py and its workers are all gone."""

    def wait() -> None:
        # os.read, not sys.stdin: a thread still blocked in the buffered reader at exit holds its lock, and the
        # interpreter's shutdown then aborts ("could not acquire lock for <stdin>").
        while os.read(0, 4096):
            pass
        stop()

    threading.Thread(target=wait, name="stop-when-told", daemon=True).start()
