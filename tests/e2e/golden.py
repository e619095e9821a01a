"""Helpers for the golden (capture replay) tests, see test_golden.py.

Self-contained on purpose: no dependency on conftest.py.  Everything that
reads a socket is bounded by a deadline.

Contents:
  * capture loading (tests/data/captures/*.json, hex chunks per direction)
  * websocket frames (RFC 6455): parse, build, masking
  * kptunnel packets (wire spec section 3) and control messages (6.3)
  * AES-256-CFB128 stream state (wire spec section 4), optional
  * auth helpers (magic, challenge response)
  * small socket utilities: free ports, deadline reads, echo server,
    process start/stop
"""

import base64
import hashlib
import json
import os
import re
import socket
import struct
import threading
import time

from tunhelp import Tun, free_port, ws_accept  # noqa: F401 (re-exported)

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.normpath(os.path.join(HERE, "..", "data", "captures"))

PASS = "p"
ENCPASS = "e"
SESSION_QUERY = "11111111-2222-3333-4444-555555555555"
LACK = bytes(range(10)) * 2

KIND_NORMAL = 0
KIND_DUMMY = 1
KIND_SYNC = 3

CTRL_HEADER = 0
CTRL_RESP_HEADER = 1

# Default bound for any single wait on a socket.
TIMEOUT = 5.0

try:  # optional: needed only for the encrypted captures
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    try:  # cryptography >= 43 moved CFB to "decrepit"
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:
        from cryptography.hazmat.primitives.ciphers.modes import CFB
    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover - depends on the host
    HAVE_CRYPTO = False

CRYPTO_SKIP_REASON = (
    "python3 'cryptography' module missing (Debian package python3-cryptography); "
    "encrypted golden captures cannot be checked")


# --------------------------------------------------------------------------
# captures

def load_capture(name):
    """Load tests/data/captures/<name>.json, hex chunks turned into bytes.

    Returns the dict with, for each direction list ("c2s", "s2c", and the
    same inside every element of "connections", plus "c2s_held" /
    "s2c_held"), the list of chunks as bytes.
    """
    path = os.path.join(CAPTURES, name)
    with open(path) as f:
        d = json.load(f)

    def conv(obj):
        for key in ("c2s", "s2c", "c2s_held", "s2c_held"):
            if key in obj:
                obj[key] = [bytes.fromhex(h) for h in obj[key]]
        return obj

    conv(d)
    for c in d.get("connections", []):
        conv(c)
    return d


def split_http(stream):
    """Split a raw byte stream into (http head incl. CRLFCRLF, rest)."""
    i = stream.index(b"\r\n\r\n") + 4
    return stream[:i], stream[i:]


# --------------------------------------------------------------------------
# websocket frames

class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "key", "payload", "raw")

    def __init__(self, fin, rsv, opcode, masked, key, payload, raw):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.key, self.payload, self.raw = masked, key, payload, raw

    def __repr__(self):
        return "Frame(fin=%d op=%d masked=%d len=%d %s)" % (
            self.fin, self.opcode, self.masked, len(self.payload),
            self.payload[:40].hex())


def mask_bytes(data, key):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(
        len(data), "big")


def parse_frame(buf):
    """Parse one frame at the start of buf -> (Frame, consumed) or (None, 0)
    when buf does not hold a complete frame yet."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    off = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack(">H", buf[2:4])[0]
        off = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack(">Q", buf[2:10])[0]
        off = 10
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if len(buf) < off + 4:
            return None, 0
        key = bytes(buf[off:off + 4])
        off += 4
    if len(buf) < off + n:
        return None, 0
    payload = bytes(buf[off:off + n])
    if masked:
        payload = mask_bytes(payload, key)
    fr = Frame(b0 >> 7, (b0 >> 4) & 7, b0 & 0x0F, masked, key, payload,
               bytes(buf[:off + n]))
    return fr, off + n


def parse_frames(data):
    """Parse a complete byte string of frames -> list of Frame (asserts no
    trailing partial frame)."""
    out = []
    data = bytes(data)
    while data:
        fr, used = parse_frame(data)
        assert fr is not None, "truncated frame: %s" % data.hex()
        out.append(fr)
        data = data[used:]
    return out


def build_frame(payload, opcode=2, mask=False, key=None, fin=True):
    hdr = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr.append(mbit | n)
    elif n < 65536:
        hdr.append(mbit | 126)
        hdr += struct.pack(">H", n)
    else:
        hdr.append(mbit | 127)
        hdr += struct.pack(">Q", n)
    if mask:
        if key is None:
            key = os.urandom(4)
        hdr += key
        payload = mask_bytes(payload, key)
    return bytes(hdr) + payload


# --------------------------------------------------------------------------
# kptunnel packets

class Packet:
    __slots__ = ("kind", "citi", "payload", "packno", "raw")

    def __init__(self, kind, citi=None, payload=None, packno=None, raw=b""):
        self.kind, self.citi, self.payload, self.packno = kind, citi, payload, packno
        self.raw = raw

    def __repr__(self):
        if self.kind == KIND_NORMAL:
            return "NORMAL(citi=%#x len=%d %r)" % (self.citi, len(self.payload),
                                                  self.payload[:120])
        if self.kind == KIND_SYNC:
            return "SYNC(citi=%#x packNo=%d)" % (self.citi, self.packno)
        if self.kind == KIND_DUMMY:
            return "DUMMY"
        return "KIND(%d)" % self.kind

    def __eq__(self, other):
        return isinstance(other, Packet) and self.raw == other.raw


def parse_packet(buf):
    """-> (Packet, consumed) or (None, 0) if incomplete. Raises ValueError on
    an illegal kind."""
    if not buf:
        return None, 0
    kind = buf[0]
    if kind == KIND_DUMMY:
        return Packet(KIND_DUMMY, raw=bytes(buf[:1])), 1
    if kind == KIND_NORMAL:
        if len(buf) < 7:
            return None, 0
        citi, n = struct.unpack(">IH", buf[1:7])
        if len(buf) < 7 + n:
            return None, 0
        return Packet(KIND_NORMAL, citi, bytes(buf[7:7 + n]),
                      raw=bytes(buf[:7 + n])), 7 + n
    if kind == KIND_SYNC:
        if len(buf) < 13:
            return None, 0
        citi, no = struct.unpack(">Iq", buf[1:13])
        return Packet(KIND_SYNC, citi, packno=no, raw=bytes(buf[:13])), 13
    raise ValueError("illegal packet kind %#x in %s" % (kind, bytes(buf[:32]).hex()))


def parse_packets(data):
    out = []
    data = bytes(data)
    while data:
        p, used = parse_packet(data)
        assert p is not None, "truncated packet: %s" % data.hex()
        out.append(p)
        data = data[used:]
    return out


def normal(citi, payload):
    return struct.pack(">BIH", KIND_NORMAL, citi, len(payload)) + payload


def sync(citi, packno):
    return struct.pack(">BIq", KIND_SYNC, citi, packno)


DUMMY = b"\x01"


# --------------------------------------------------------------------------
# encryption (wire spec section 4)

IV = bytes(range(16))


class Cfb:
    """One direction of one transport connection: a continuous AES-256-CFB128
    stream, or the identity when encCount is 0.  enc_count < 0: all payloads;
    N > 0: the first N+1 payloads (Go off-by-one); zero-length payloads count
    but do not advance the keystream."""

    def __init__(self, enc_pass, enc_count=-1, decrypt=False):
        self.count = enc_count
        self.n = 0
        self.ctx = None
        if enc_count != 0:
            if not HAVE_CRYPTO:
                raise RuntimeError(CRYPTO_SKIP_REASON)
            key = hashlib.sha256(enc_pass.encode()).digest()
            c = Cipher(algorithms.AES(key), CFB(IV))
            self.ctx = c.decryptor() if decrypt else c.encryptor()

    def __call__(self, data):
        if self.ctx is None:
            return data
        on = self.count < 0 or self.n <= self.count
        self.n += 1
        if not on or not data:
            return data
        return self.ctx.update(data)


def magic(pw=PASS, enc_pass=ENCPASS):
    return hashlib.sha256((pw + enc_pass).encode()).digest()


def challenge_response(challenge, pw, hint):
    return base64.b64encode(
        hashlib.sha512((challenge + pw + hint).encode()).digest()).decode()


def is_b64_of(s, nbytes):
    """True if s is standard padded base64 (of exactly nbytes bytes unless
    nbytes is None)."""
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", s):
        return False
    try:
        n = len(base64.b64decode(s, validate=True))
    except ValueError:
        return False
    return nbytes is None or n == nbytes


def go_json(obj):
    """Serialise like Go's encoding/json (compact, <>& escaped)."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026")).encode()


def json_pairs(data):
    """Decode JSON keeping the key order: objects become lists of (k, v)."""
    return json.loads(data, object_pairs_hook=lambda kv: list(kv))


# --------------------------------------------------------------------------
# sockets and processes

def listen(port=0):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s


def accept(lsock, timeout=TIMEOUT):
    lsock.settimeout(timeout)
    try:
        c, _ = lsock.accept()
    except socket.timeout:
        raise AssertionError("no connection accepted within %.1fs" % timeout)
    c.settimeout(timeout)
    return c


def connect(port, timeout=TIMEOUT):
    """Connect to 127.0.0.1:port, retrying until the deadline (the binary may
    still be starting)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1.0)
            s.settimeout(timeout)
            return s
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise AssertionError("cannot connect to 127.0.0.1:%d: %s" % (port, last))


class Reader:
    """Buffered reads from a socket, every read bounded by a deadline."""

    def __init__(self, sock, what="peer"):
        self.sock = sock
        self.buf = bytearray()
        self.what = what
        self.eof = False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timeout waiting for data from %s; have %s" %
                                 (self.what, bytes(self.buf[:200]).hex()))
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("timeout waiting for data from %s; have %s" %
                                 (self.what, bytes(self.buf[:200]).hex()))
        if not d:
            self.eof = True
            raise EOFError("%s closed the connection; have %s" %
                           (self.what, bytes(self.buf[:200]).hex()))
        self.buf += d

    def read_until(self, marker, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def read_exact(self, n, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_frame(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            fr, used = parse_frame(self.buf)
            if fr is not None:
                del self.buf[:used]
                return fr
            self._fill(deadline)

    def wait_eof(self, timeout=TIMEOUT):
        """Return all bytes received until EOF (or raise on timeout)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            pass
        except ConnectionResetError:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


class PacketStream:
    """De-framed kptunnel stream on top of a socket.

    ws=True: payloads of websocket frames (masked frames are unmasked; every
    frame is recorded in .frames for later checks).  ws=False: raw TCP.
    """

    def __init__(self, sock, ws, what="peer", rx_cipher=None):
        self.r = Reader(sock, what)
        self.ws = ws
        self.stream = bytearray()
        self.frames = []
        self.rx = rx_cipher
        self.log = []  # decoded packets, for failure messages

    def _more(self, deadline):
        left = deadline - time.monotonic()
        if self.ws:
            fr = self.r.read_frame(timeout=max(left, 0.001))
            self.frames.append(fr)
            if fr.opcode in (0, 1, 2):
                self.stream += fr.payload
            elif fr.opcode == 8:
                raise EOFError("%s sent a websocket close frame %s" %
                               (self.r.what, fr.payload.hex()))
        else:
            self.r._fill(deadline)
            self.stream += self.r.buf
            self.r.buf.clear()

    def read_bytes(self, n, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.stream) < n:
            self._more(deadline)
        out = bytes(self.stream[:n])
        del self.stream[:n]
        return out

    def read_packet(self, timeout=TIMEOUT, skip_dummy=False):
        """Next packet; NORMAL payloads are decrypted with rx_cipher."""
        deadline = time.monotonic() + timeout
        while True:
            p, used = parse_packet(self.stream)
            if p is not None:
                del self.stream[:used]
                if p.kind == KIND_NORMAL and self.rx is not None:
                    p.payload = self.rx(p.payload)
                self.log.append(p)
                if skip_dummy and p.kind == KIND_DUMMY:
                    continue
                return p
            self._more(deadline)

    def wait_eof(self, timeout=TIMEOUT):
        """Read until the peer closes; return the packets received meanwhile."""
        deadline = time.monotonic() + timeout
        pkts = []
        try:
            while True:
                pkts.append(self.read_packet(timeout=deadline - time.monotonic()))
        except (EOFError, ConnectionResetError):
            return pkts


def start_echo_server():
    """Threaded TCP echo server on a free port -> (port, stop function,
    list of connections' received bytes)."""
    ls = listen()
    port = ls.getsockname()[1]
    received = []
    stop = threading.Event()

    def serve(c):
        got = bytearray()
        received.append(got)
        c.settimeout(0.2)
        try:
            while not stop.is_set():
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    break
                got += d
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def loop():
        ls.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=serve, args=(c,), daemon=True).start()
        ls.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def shutdown():
        stop.set()
        t.join(2)

    return port, shutdown, received


class Proc(Tun):
    """A tunneld child process (the test's own); stdout and stderr go to a
    file shown on failure."""

    STOP_TIMEOUT = 3.0

    def __init__(self, args, tmpdir):
        super().__init__("tunneld-%d" % id(self), args, tmpdir)
        self.args = self.argv

    def stderr(self):
        return self.log()
