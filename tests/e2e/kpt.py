"""
A minimal kptunnel websocket client, written from the wire specification
(kptunnel-wire.md), to talk to tunneld at the packet level.

It covers what the tests need: the websocket handshake and masked client
frames (2.2), the lack-offset pattern (5.1), AES-256-CFB payload encryption
with kptunnel's encCount rule (4), the magic check (5.2), the challenge /
AuthResponse with its SHA-512 response (5.3-5.5), and CTRL_HEADER /
CTRL_RESP_HEADER plus NORMAL data on CITIs (6.3-6.5).  No reconnection, no
flow control beyond small exchanges (fewer than 30 packets per CITI).

AES needs the `cryptography` module (Debian: python3-cryptography); without
it only enc_count=0 works (HAVE_AES tells).
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time

from tunhelp import ws_accept

try:
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    HAVE_AES = True
except ImportError:     # pragma: no cover - depends on the host
    HAVE_AES = False

LACK = bytes(range(10)) * 2
IV = bytes(range(16))

KIND_NORMAL = 0
KIND_DUMMY = 1
KIND_SYNC = 3
CITI_CTRL = 0
CTRL_HEADER = 0
CTRL_RESP_HEADER = 1


class KptError(Exception):
    pass


class _Cipher:
    """One direction's payload transform under kptunnel's encCount rule."""

    def __init__(self, enc_pass, enc_count, decrypt):
        # -1: every payload; 0: none; N > 0: the first N + 1 (Go off-by-one).
        self.left = -1 if enc_count < 0 else (0 if enc_count == 0
                                              else enc_count + 1)
        self.ctx = None
        if enc_count != 0:
            if not HAVE_AES:
                raise KptError("AES needs the cryptography module; use "
                               "enc_count=0")
            key = hashlib.sha256(enc_pass.encode()).digest()
            c = Cipher(algorithms.AES(key), modes.CFB(IV))
            self.ctx = c.decryptor() if decrypt else c.encryptor()

    def apply(self, data):
        """Transforms one NORMAL payload (zero-length ones count too)."""
        if self.left == 0:
            return data
        if self.left > 0:
            self.left -= 1
        if not data:
            return data
        return self.ctx.update(data)


def host_info(host, port):
    return {"Scheme": "", "Name": host, "Port": port, "Path": "",
            "Query": ""}


def forward(src_host, src_port, dst_host, dst_port, reverse=False):
    return {"IsReverseTunnel": reverse, "Src": host_info(src_host, src_port),
            "Dst": host_info(dst_host, dst_port)}


class KptClient:
    """A kptunnel wsclient speaking to host:port."""

    def __init__(self, host, port, password="", enc_pass="", enc_count=-1,
                 timeout=10.0):
        self.host = host
        self.port = port
        self.password = password
        self.enc_pass = enc_pass
        self.enc_count = enc_count
        self.timeout = timeout
        self.sock = None
        self.stream = bytearray()   # de-framed websocket payload bytes
        self.enc = _Cipher(enc_pass, enc_count, decrypt=False)
        self.dec = _Cipher(enc_pass, enc_count, decrypt=True)
        self.session_id = None
        self.token = None
        self.closed = False
        self.received = {}          # citi -> list of payloads not yet taken
        self.ctrl = []              # control messages not yet taken

    # -- transport -------------------------------------------------------

    def connect(self, path="/?session=kpt-e2e"):
        self.sock = socket.create_connection((self.host, self.port),
                                             timeout=self.timeout)
        self.sock.settimeout(self.timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\n"
               "Host: %s:%d\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\n"
               "Origin: http://localhost\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" %
               (path, self.host, self.port, key))
        self.sock.sendall(req.encode())
        head = bytearray()
        while b"\r\n\r\n" not in head:
            d = self.sock.recv(4096)
            if not d:
                raise KptError("EOF during the HTTP handshake: %r" %
                               bytes(head))
            head += d
        end = head.index(b"\r\n\r\n") + 4
        text = head[:end].decode("latin-1")
        lines = text.split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise KptError("handshake refused: %r" % lines[0])
        hdrs = {}
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if hdrs.get("sec-websocket-accept") != ws_accept(key):
            raise KptError("bad Sec-WebSocket-Accept: %r" % hdrs)
        self._raw = bytearray(head[end:])

    def _send_frame(self, payload, opcode=0x2):
        n = len(payload)
        hdr = bytearray([0x80 | opcode])
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr.append(0x80 | 126)
            hdr += struct.pack("!H", n)
        else:
            hdr.append(0x80 | 127)
            hdr += struct.pack("!Q", n)
        mask = os.urandom(4)
        hdr += mask
        m = (mask * (n // 4 + 1))[:n]
        body = (int.from_bytes(payload, "big") ^
                int.from_bytes(m, "big")).to_bytes(n, "big") if n else b""
        self.sock.sendall(bytes(hdr) + body)

    def _read_frames(self):
        """Reads from the socket until at least one frame is decoded."""
        while True:
            r = self._raw
            if len(r) >= 2:
                b0, b1 = r[0], r[1]
                if b1 & 0x80:
                    raise KptError("masked frame from the server")
                n = b1 & 0x7f
                pos = 2
                if n == 126:
                    if len(r) < 4:
                        n = None
                    else:
                        n = struct.unpack("!H", r[2:4])[0]
                        pos = 4
                elif n == 127:
                    if len(r) < 10:
                        n = None
                    else:
                        n = struct.unpack("!Q", r[2:10])[0]
                        pos = 10
                if n is not None and len(r) >= pos + n:
                    payload = bytes(r[pos:pos + n])
                    del r[:pos + n]
                    op = b0 & 0x0f
                    if op in (0x0, 0x1, 0x2):
                        self.stream += payload
                    elif op == 0x8:
                        self.closed = True
                        raise KptError("websocket close from the server: %r"
                                       % payload)
                    elif op == 0x9:
                        self._send_frame(payload, opcode=0xA)
                    return
            d = self.sock.recv(65536)
            if not d:
                self.closed = True
                raise KptError("EOF from the server")
            r += d

    def _read_exact(self, n):
        while len(self.stream) < n:
            self._read_frames()
        out = bytes(self.stream[:n])
        del self.stream[:n]
        return out

    # -- packets ---------------------------------------------------------

    def send_normal(self, citi, payload):
        body = self.enc.apply(payload)
        self._send_frame(struct.pack("!BIH", KIND_NORMAL, citi, len(body)) +
                         body)

    def read_packet(self):
        """Next packet as (kind, citi, payload_or_packno); DUMMY skipped."""
        while True:
            kind = self._read_exact(1)[0]
            if kind == KIND_DUMMY:
                continue
            if kind == KIND_NORMAL:
                citi, n = struct.unpack("!IH", self._read_exact(6))
                return kind, citi, self.dec.apply(self._read_exact(n))
            if kind == KIND_SYNC:
                citi, packno = struct.unpack("!Iq", self._read_exact(12))
                return kind, citi, packno
            raise KptError("illegal packet kind %d" % kind)

    # -- handshake -------------------------------------------------------

    def handshake(self, forwards):
        """Lack pattern, magic, challenge/response, result.  Returns the
        AuthResult document (a dict); raises KptError on refusal.
        Frames that came with the 101 are still in _raw: _read_frames
        decodes them first."""
        first = self._read_exact(10)
        off = first[0]
        if off >= 10:
            raise KptError("bad lack offset %d" % off)
        rest = self._read_exact(10 - off)
        if list(rest) != list(range(off, 10)):
            raise KptError("bad lack pattern %r" % (first + rest))
        self._send_frame(LACK)

        kind, citi, magic = self.read_packet()
        want = hashlib.sha256((self.password + self.enc_pass).encode())
        if kind != KIND_NORMAL or citi != CITI_CTRL or \
                magic != want.digest():
            raise KptError("unmatch MAGIC")
        kind, citi, payload = self.read_packet()
        if kind != KIND_NORMAL or citi != CITI_CTRL:
            raise KptError("expected the challenge")
        challenge = json.loads(payload.decode())
        hint = base64.b64encode(hashlib.sha256(os.urandom(32)).digest())
        hint = hint.decode()
        resp = base64.b64encode(hashlib.sha512(
            (challenge["Challenge"] + self.password + hint).encode())
            .digest()).decode()
        doc = {"Response": resp, "Hint": hint, "SessionToken": "",
               "WriteNo": 0, "ReadNo": 0, "Ctrl": 0,
               "ForwardList": forwards}
        self.send_normal(CITI_CTRL, json.dumps(
            doc, separators=(",", ":")).encode())
        kind, citi, payload = self.read_packet()
        if kind != KIND_NORMAL or citi != CITI_CTRL:
            raise KptError("expected the auth result")
        result = json.loads(payload.decode())
        if result.get("Result") != "ok":
            raise KptError("failed to auth -- %s" % result.get("Result"))
        self.session_id = result["SessionId"]
        self.token = result["SessionToken"]
        self.challenge = challenge
        return result

    # -- session ---------------------------------------------------------

    def _pump(self):
        """Reads one packet and files it."""
        kind, citi, payload = self.read_packet()
        if kind == KIND_SYNC:
            return
        if citi == CITI_CTRL:
            if payload:
                self.ctrl.append((payload[0],
                                  json.loads(payload[1:].decode())))
        else:
            self.received.setdefault(citi, []).append(payload)

    def open_citi(self, citi, host, port):
        """Sends CTRL_HEADER and returns the matching CTRL_RESP_HEADER."""
        doc = {"HostInfo": host_info(host, port), "CitiId": citi}
        self.send_normal(CITI_CTRL, bytes([CTRL_HEADER]) + json.dumps(
            doc, separators=(",", ":")).encode())
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for i, (t, m) in enumerate(self.ctrl):
                if t == CTRL_RESP_HEADER and m.get("CitiId") == citi:
                    del self.ctrl[i]
                    return m
            self._pump()
        raise KptError("no CTRL_RESP_HEADER for citi %d" % citi)

    def send_data(self, citi, data):
        """Sends data on a CITI in packets of at most 65535 bytes."""
        for i in range(0, len(data), 65535):
            self.send_normal(citi, data[i:i + 65535])

    def close_citi(self, citi):
        self.send_normal(citi, b"")

    def recv_data(self, citi, n):
        """Collects n bytes of data of a CITI (fails on its close)."""
        out = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(out) < n:
            q = self.received.get(citi)
            while q:
                p = q.pop(0)
                if not p:
                    raise KptError("citi %d closed after %d bytes" %
                                   (citi, len(out)))
                out += p
            if len(out) >= n:
                break
            if time.monotonic() >= deadline:
                raise KptError("citi %d: %d of %d bytes" %
                               (citi, len(out), n))
            self._pump()
        return bytes(out)

    def wait_close(self, citi):
        """Waits for the peer's zero-length packet on a CITI."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            q = self.received.get(citi, [])
            while q:
                if not q.pop(0):
                    return True
            self._pump()
        raise KptError("citi %d not closed by the peer" % citi)

    def close(self):
        if self.sock is not None:
            try:
                self._send_frame(struct.pack("!H", 1000), opcode=0x8)
            except OSError:
                pass
            self.sock.close()
            self.sock = None


# --------------------------------------------------------------------------
# Offline decoding of captured traffic


def ws_stream(raw):
    """The concatenated payloads of the websocket frames in a captured
    direction (HTTP head skipped, masks removed)."""
    raw = bytes(raw)
    pos = raw.index(b"\r\n\r\n") + 4
    out = bytearray()
    while pos + 2 <= len(raw):
        b1 = raw[pos + 1]
        n = b1 & 0x7f
        p = pos + 2
        if n == 126:
            n = struct.unpack("!H", raw[p:p + 2])[0]
            p += 2
        elif n == 127:
            n = struct.unpack("!Q", raw[p:p + 8])[0]
            p += 8
        mask = None
        if b1 & 0x80:
            mask = raw[p:p + 4]
            p += 4
        if p + n > len(raw):
            break       # a frame cut by the end of the capture
        body = raw[p:p + n]
        if mask is not None and n:
            m = (mask * (n // 4 + 1))[:n]
            body = (int.from_bytes(body, "big") ^
                    int.from_bytes(m, "big")).to_bytes(n, "big")
        if raw[pos] & 0x0f in (0x0, 0x1, 0x2):
            out += body
        pos = p + n
    return bytes(out)


def packets(stream):
    """Splits a kptunnel byte stream (after the 20-byte lack pattern) into
    (kind, citi, payload-or-packno) tuples; a packet cut by the end of the
    stream is dropped."""
    if stream[:20] != LACK:
        raise KptError("stream does not start with the lack pattern")
    out = []
    pos = 20
    while pos < len(stream):
        kind = stream[pos]
        if kind == KIND_DUMMY:
            out.append((kind, None, None))
            pos += 1
        elif kind == KIND_NORMAL:
            if pos + 7 > len(stream):
                break
            citi, n = struct.unpack("!IH", stream[pos + 1:pos + 7])
            if pos + 7 + n > len(stream):
                break
            out.append((kind, citi, stream[pos + 7:pos + 7 + n]))
            pos += 7 + n
        elif kind == KIND_SYNC:
            if pos + 13 > len(stream):
                break
            citi, packno = struct.unpack("!Iq", stream[pos + 1:pos + 13])
            out.append((kind, citi, packno))
            pos += 13
        else:
            raise KptError("illegal packet kind %d at offset %d" %
                           (kind, pos))
    return out
