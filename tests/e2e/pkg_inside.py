"""
Run inside the package's throwaway root (pkgroot.py) by test_package.py:
small clients and servers that answer with one JSON line.

    pkg_inside.py echo PORT             an echo server, in the background
    pkg_inside.py push PORT N           N random bytes through PORT and back
    pkg_inside.py across PORT N CMD...  half of N, then CMD (systemctl
                                        restart ...), then the other half,
                                        on one connection
    pkg_inside.py console PATH          GET PATH on the console (its token
                                        from /run/tunneld/console.token)
    pkg_inside.py wait-line FILE REGEX  polls FILE until a line matches
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

DEADLINE = 60.0


def echo(port):
    if os.fork() > 0:
        return {"port": port}
    os.setsid()
    # Whoever ran us waits for our output's end: let it go.
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)

    def serve(c):
        with c:
            while True:
                b = c.recv(65536)
                if not b:
                    c.shutdown(socket.SHUT_WR)
                    return
                c.sendall(b)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def connect(port):
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            return s
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_n(s, n):
    out = bytearray()
    while len(out) < n:
        b = s.recv(min(65536, n - len(out)))
        if not b:
            break
        out += b
    return bytes(out)


def push(port, n, between=None):
    data = os.urandom(n)
    s = connect(port)
    half = n // 2
    s.sendall(data[:half])
    back = read_n(s, half)
    res = {}
    if between:
        r = subprocess.run(between, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        res["between"] = [r.returncode, r.stdout.decode()]
    s.sendall(data[half:])
    s.shutdown(socket.SHUT_WR)
    back += read_n(s, n - half)
    s.close()
    res.update({"sent": n, "received": len(back),
                "equal": hashlib.sha256(back).hexdigest() ==
                hashlib.sha256(data).hexdigest()})
    return res


def console(path):
    with open("/run/tunneld/console.token") as f:
        tok = f.read().strip()
    req = urllib.request.Request("http://127.0.0.1:8081" + path,
                                 headers={"Authorization": "Bearer " + tok})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read().decode()
    try:
        return json.loads(body)
    except ValueError:
        return {"text": body}


def wait_line(path, rx):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                for line in f:
                    if re.search(rx, line):
                        return {"line": line.strip()}
        except OSError:
            pass
        time.sleep(0.05)
    return {"line": None}


def main():
    cmd = sys.argv[1]
    if cmd == "echo":
        out = echo(int(sys.argv[2]))
    elif cmd == "push":
        out = push(int(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "across":
        out = push(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    elif cmd == "console":
        out = console(sys.argv[2])
    elif cmd == "wait-line":
        out = wait_line(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command %s" % cmd)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
