"""A process forked by a command before it sets its own signal handlers (a pool worker being
started) is not interrupted by the command's Ctrl-C handler: the command stops it."""

from __future__ import annotations

import os
import signal

from codegen.cli import interruptible


def _forked_exit(sig: int) -> int:
    @interruptible
    def command() -> int:
        pid = os.fork()
        if pid == 0:  # the child, with the command's handlers still in place
            try:
                os.kill(os.getpid(), sig)
                os._exit(0)  # the signal was left to the command
            except BaseException:  # noqa: BLE001 - the handler raised here: a traceback
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    return command()


def test_ctrl_c_in_a_fresh_fork_is_left_to_the_command():
    assert _forked_exit(signal.SIGINT) == 0


def test_sigterm_in_a_fresh_fork_ends_it_quietly():
    assert _forked_exit(signal.SIGTERM) == 128 + signal.SIGTERM


class _Interrupting:
    """An object whose finaliser takes a signal: Python drops what a __del__ raises, as it
    does in an at-fork callback (logging's lock release, where a real Ctrl-C was lost)."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def __del__(self) -> None:
        os.kill(os.getpid(), self.sig)
        for _ in range(1000):  # the handler runs here, inside the finaliser
            pass


def _dropped_exit(sig: int) -> str:
    import time

    @interruptible
    def command() -> str:
        _Interrupting(sig)  # finalised at once
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # a command that would otherwise run on
            time.sleep(0.01)
        return "finished"

    try:
        return command()
    except BaseException as exc:  # noqa: BLE001 - how the command ended
        return f"{type(exc).__name__} {getattr(exc, 'exit_code', getattr(exc, 'code', ''))}"


def test_ctrl_c_dropped_in_a_finaliser_still_stops_the_command():
    assert _dropped_exit(signal.SIGINT) == "Exit 130"


def test_sigterm_dropped_in_a_finaliser_still_stops_the_command():
    assert _dropped_exit(signal.SIGTERM) == "SystemExit 143"
