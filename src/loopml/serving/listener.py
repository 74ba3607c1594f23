"""Closing a listening socket without resetting the connections in its backlog.

The kernel completes TCP handshakes on its own and queues the connections until the
server accepts them; the client has usually sent its request by then. Closing the socket
resets every queued connection unanswered. So a server that stops listening first stops
new handshakes from starting, then accepts (and answers) what is queued, and only then
closes: a client that arrives later finds the port closed and is refused, which it can
tell apart from a dropped request and retry.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
import sys
from collections.abc import Callable

_SO_ATTACH_FILTER = 26  # Linux; the socket module does not name it
# Classic BPF over the TCP header (a socket filter sees the segment from there): drop a
# segment whose flags are SYN without ACK -- a new handshake -- and keep everything else,
# so handshakes already under way (their final ACK) still complete.
_DROP_NEW_HANDSHAKES = (
    (0x30, 0, 0, 13),  # load the flags byte
    (0x54, 0, 0, 0x12),  # keep SYN and ACK
    (0x15, 0, 1, 0x02),  # SYN alone?
    (0x06, 0, 0, 0),  # drop
    (0x06, 0, 0, 0xFFFFFFFF),  # keep
)
# Seconds for handshakes already under way to land in the queue before it is emptied.
HANDSHAKE_GRACE = 0.05


def refuse_new_handshakes(sock: socket.socket) -> bool:
    """Make the kernel ignore new connection attempts on ``sock`` (their SYN is dropped;
    the client retries it and is refused once the socket is closed). False where this
    cannot be done (not Linux), and the caller drains as well as it can without it."""
    if not sys.platform.startswith("linux"):
        return False
    code = b"".join(struct.pack("HBBI", *insn) for insn in _DROP_NEW_HANDSHAKES)
    program = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(_DROP_NEW_HANDSHAKES), ctypes.addressof(program))
    try:
        # The kernel copies the program: the buffer may go once this returns.
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def accept_queued(sock: socket.socket, take: Callable[[socket.socket], None]) -> int:
    """Accept every connection already queued on ``sock`` and give each to ``take``;
    return how many."""
    blocking = sock.getblocking()
    sock.setblocking(False)
    taken = 0
    try:
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # closed meanwhile
                break
            taken += 1
            try:
                take(conn)
            except Exception:
                conn.close()
                raise
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(blocking)
    return taken
