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
