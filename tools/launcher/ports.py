"""Choosing loopback ports for servers that others must be told about first.

A Raft peer's or a daemon's address is written down (ports.json, flags)
before the process that listens on it starts, so a port is chosen, released
and bound again later. Two things can take it in between:

  * any outgoing connection on the machine: the kernel gives connections
    local ports from net.ipv4.ip_local_port_range (32768-60999 by default),
    the same range `bind(port 0)` picks from. A cluster's own daemons open
    hundreds of connections while it starts, so a port picked with bind(0)
    was seen taken by the time its daemon bound it (CI, stop 26:
    "gRPC listener: port in use").
  * another test or cluster choosing at the same moment.

So ports are chosen below the ephemeral range, where connections never land,
at random, and each choice is reserved for a while with a file in a
directory every chooser on the machine shares (the launcher, the Python
tests). A reservation lasts RESERVATION_SECONDS; a cluster that reuses its
ports renews them (reserve()). C++ servers bind port 0 themselves and read
back what they got, so they need none of this.
"""
import functools
import os
import random
import socket
import tempfile
import time

RESERVATION_SECONDS = 30 * 60
RANGE_LOW = 15000
RESERVATION_DIR = os.path.join(tempfile.gettempdir(), "mailgrid-ports")


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@functools.cache  # once per process, not per candidate port
def _reservation_dir():
    try:
        os.makedirs(RESERVATION_DIR, exist_ok=True)
        os.chmod(RESERVATION_DIR, 0o1777)  # shared by every user's tests
    except OSError:
        pass
    return RESERVATION_DIR


def _claim(port):
    """Takes the reservation of port unless someone holds a live one."""
    path = os.path.join(_reservation_dir(), str(port))
    try:
        if time.time() - os.stat(path).st_mtime < RESERVATION_SECONDS:
            return False
        os.unlink(path)  # expired: whoever held it is long done
    except FileNotFoundError:
        pass
    except OSError:
        return True  # no shared directory to write: the bind check alone
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        return True
    except FileExistsError:
        return False  # another chooser took it a moment ago
    except OSError:
        return True


def reserve(port):
    """Renews (or takes) the reservation of a port this caller keeps using."""
    path = os.path.join(_reservation_dir(), str(port))
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o666))
        os.utime(path)
    except OSError:
        pass


def pick(taken=()):
    """A loopback port that is free now, reserved for this caller, and outside
    the range the kernel hands to connections."""
    high = _ephemeral_low() - 1
    if high - RANGE_LOW < 1000:  # an unusual ip_local_port_range: no room below it
        return _pick_ephemeral(taken)
    candidates = list(range(RANGE_LOW, high + 1))
    random.shuffle(candidates)
    for port in candidates:
        if port not in taken and _bindable(port) and _claim(port):
            return port
    raise RuntimeError("no free loopback port in %d-%d" % (RANGE_LOW, high))


def _pick_ephemeral(taken):
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
