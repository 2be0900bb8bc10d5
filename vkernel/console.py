"""The run's terminal: a pseudo-terminal of its own with ``-t``, else none at all.

As ``docker run -t``: with ``kiln run -t`` the guest's stdin, stdout and
stderr are the slave side of a new pseudo-terminal, which is also the
controlling terminal of the guest's session (``/dev/tty``); the supervisor
relays bytes between its own stdio and the master side, puts its own
terminal in raw mode meanwhile (so keys such as ^C reach the guest's line
discipline) and passes window-size changes on. Without ``-t`` the first
guest process starts a session of its own with no controlling terminal, so
``/dev/tty`` is ``ENXIO`` and nothing the guest does can change the host's
terminal through it. Either way the host terminal's settings are restored
when the run ends (:class:`TerminalGuard`), even if a guest changed them
through a descriptor it inherited.
"""
from __future__ import annotations

import fcntl
import os
import struct
import termios
from dataclasses import dataclass

_TIOCSCTTY = 0x540E
_TIOCGWINSZ = 0x5413
_TIOCSWINSZ = 0x5414


class TerminalGuard:
    """Saves the settings of the host terminal on stdin (if it is one) and puts them back."""

    def __init__(self) -> None:
        self.fd = -1
        self.saved: list | None = None
        for fd in (0, 1, 2):
            if os.isatty(fd):
                try:
                    self.saved = termios.tcgetattr(fd)
                    self.fd = fd
                except termios.error:
                    continue
                break

    def raw(self) -> None:
        """Raw mode (for -t: the guest's own line discipline interprets every key)."""
        if self.fd < 0 or self.saved is None:
            return
        mode = list(self.saved)
        mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
        mode[1] &= ~termios.OPOST
        mode[2] = (mode[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        mode[6] = list(mode[6])
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSAFLUSH, mode)

    def restore(self) -> None:
        if self.fd >= 0 and self.saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            except termios.error:
                pass


@dataclass
class Pty:
    """A pseudo-terminal for one run: ``master`` stays with the supervisor."""
    master: int
    slave: int

    @classmethod
    def open(cls) -> "Pty":
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        os.set_inheritable(slave, False)
        p = cls(master, slave)
        p.copy_size(0)
        return p

    def copy_size(self, from_fd: int) -> None:
        """The window size of the host terminal ``from_fd`` (if it is one) onto the pty."""
        for fd in (from_fd, 1, 2):
            try:
                ws = fcntl.ioctl(fd, _TIOCGWINSZ, b"\0" * 8)
            except OSError:
                continue
            if struct.unpack("<HHHH", ws)[:2] != (0, 0):
                fcntl.ioctl(self.master, _TIOCSWINSZ, ws)
                return

    def become_terminal(self) -> None:
        """In the first guest process: a new session whose controlling terminal is the
        slave, which also becomes stdin, stdout and stderr."""
        os.close(self.master)
        os.setsid()
        fcntl.ioctl(self.slave, _TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(self.slave, fd)
        os.close(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def no_terminal() -> None:
    """In the first guest process without -t: a session of its own, no controlling terminal."""
    try:
        os.setsid()
    except OSError:
        pass                                  # already a session leader


def relay(src: int, dst: int) -> bool:
    """Copy what ``src`` has now to ``dst``; False at end of file (or a hung-up pty)."""
    try:
        data = os.read(src, 1 << 16)
    except OSError:
        return False
    if not data:
        return False
    view = memoryview(data)
    while view:
        try:
            n = os.write(dst, view)
        except BlockingIOError:
            continue
        except OSError:
            return False
        view = view[n:]
    return True
