"""Preloaded first by the decoding workers' fork server (see vidtag.run.workers.default_context): the fork
server ignores Ctrl-C from its first moment. Imported anywhere else, it does nothing.

A Ctrl-C at the terminal reaches the whole process group. multiprocessing's fork server ignores SIGINT
only once its preloaded modules are imported, so a Ctrl-C while it imported torch (a second or more)
printed a KeyboardInterrupt traceback from a process the user never started. The main process handles
Ctrl-C and stops the workers itself.
"""

import signal
import sys


def _in_fork_server_preload() -> bool:
    from multiprocessing import forkserver

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _in_fork_server_preload():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
