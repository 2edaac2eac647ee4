#!/usr/bin/env python3
"""pexpect contender of the `make bench` harness (bench/run.sh).

    python3 bench/cgatt_pexpect.py PATH N

Opens the serial port with os.open, puts it in raw mode, wraps it in
pexpect.fdpexpect.fdspawn (bytes mode), then: one warm-up round trip and N
timed ones of send(b"AT+CGATT?\\r") / expect_exact(b"OK\\r\\n"), checking that
the text before OK holds the "+CGATT: 1" line.
Prints "pexpect: <rate> round trips/s".
"""
import os
import sys
import termios
import time
import tty

import pexpect
import pexpect.fdpexpect


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: cgatt_pexpect.py PATH N\n")
        return 2
    path = sys.argv[1]
    try:
        n = int(sys.argv[2])
    except ValueError:
        n = 0
    if n < 1:
        sys.stderr.write("pexpect: bad N: %s\n" % sys.argv[2])
        return 2

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = termios.B115200  # ispeed, ospeed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    termios.tcflush(fd, termios.TCIOFLUSH)

    child = pexpect.fdpexpect.fdspawn(fd, timeout=10, use_poll=True)
    patterns = [b"OK\r\n", b"ERROR\r\n"]

    def round_trip(i):
        child.send(b"AT+CGATT?\r")
        try:
            k = child.expect_exact(patterns)
        except pexpect.TIMEOUT:
            raise SystemExit("pexpect: round trip %d: timeout" % i)
        except pexpect.EOF:
            raise SystemExit("pexpect: round trip %d: end of file" % i)
        if k != 0:
            raise SystemExit("pexpect: round trip %d: modem replied ERROR" % i)
        if b"\r\n+CGATT: 1\r\n" not in child.before:
            raise SystemExit("pexpect: round trip %d: no +CGATT: 1 in %r"
                             % (i, child.before))

    round_trip(0)  # warm-up

    t0 = time.monotonic()
    for i in range(1, n + 1):
        round_trip(i)
    secs = time.monotonic() - t0

    print("pexpect: %.1f round trips/s" % (n / secs), flush=True)
    child.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
