"""
The AEAD extension (docs/protocol.md, "AEAD extension") as seen on the
wire, for the end-to-end tests: the spec's key schedule written again in
Python, and a relay between a tunneld client and server that follows the
packet stream of every connection and tells which cipher each payload is
under.

The relay (WireRelay) listens on 127.0.0.1 and dials the upstream port for
every connection it accepts.  It follows both transports: raw TCP (the
`client` / `server` modes) and websocket (the HTTP upgrade, then frames,
unmasked for reading).  Per connection (Conn) and direction (Flow) it
decrypts the handshake (kptunnel's CFB, one stream per direction from the
fixed IV), reads the Challenge and the Hint, decides from their marks
whether the connection runs the AEAD mode, then for every NORMAL payload
of the session phase:

  * AEAD mode: opens it with AES-256-GCM under the key derived for that
    direction, the counter nonce and the packet header as additional data
    (Flow.opened / Flow.failed);
  * CFB: decrypts it with the continuing CFB stream (Flow.cfb).

Either way the plaintext of stream payloads is kept per CITI (Flow.data),
so that a test can compare it with the bytes it sent.

Without a hook the relay is a passive tap: the bytes it forwards are the
bytes it read.  With one it is a man in the middle who knows the secrets:

  * rewrite(flow_name, index, plaintext) replaces a handshake payload by
    another of the same length (the CFB stream goes on);
  * tamper(flow, pkt) is called for every packet of the session phase and
    returns None (forward it) or a list of raw packets to send instead;
    CUT in the list ends the connection there: what came before it is
    delivered, then the end of the stream (FIN) goes to the packet's
    receiver, and to its sender once the receiver has closed; the rest is
    read and dropped.  Over websocket the packets are framed again
    (one binary frame per read, masked towards the server);
  * flip_at (a byte offset of the first connection's flip_dir stream,
    transport bytes) flips the lowest bit of that byte and relays the rest
    untouched, without parsing.

The secrets are the test's own: with them the relay checks what a man in
the middle who knows only encPass could not (the AEAD keys need pass too).
"""

import base64
import hashlib
import hmac
import json
import socket
import struct
import threading

import golden as G
from tunhelp import HOST

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LABEL = b"tunneld-aead-v1"
# The window extension's member, and kptunnel's window (docs/protocol.md).
WINDOW_KEY = "TunneldWindow"
KPT_WINDOW = 59
TAG_LEN = 16
# The log line of either side for a connection that runs the mode.
AEAD_LOG = r"AEAD mode \(AES-256-GCM\) on this connection"
# Handshake NORMAL packets per direction: magic, AuthChallenge, AuthResult
# from the server; AuthResponse from the client.
HS_PACKETS = {"s2c": 3, "c2s": 1}

# In a tamper hook's answer: end the connection here.
CUT = object()


# --------------------------------------------------------------------------
# The spec's key schedule


class Secrets:
    """The key schedule of docs/protocol.md for one (pass, encPass)."""

    def __init__(self, pw, epw):
        self.pw, self.epw = pw, epw
        self.ikm = pw.encode() + b"\0" + epw.encode()
        self.kmark = self._hkdf(b"", LABEL + b" mark")

    def _hkdf(self, salt, info):
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None,
                    info=info).derive(self.ikm)

    def mark_ok(self, which, ctx, s):
        """True if s (a Challenge, which=b"challenge", ctx ""; or a Hint,
        which=b"hint", ctx the Challenge) carries the offer's mark."""
        try:
            raw = base64.b64decode(s, validate=True)
        except ValueError:
            return False
        if len(s) != 44 or len(raw) != 32:
            return False
        msg = LABEL + b" " + which + b"\0" + ctx.encode() + raw[:16]
        return hmac.compare_digest(
            hmac.new(self.kmark, msg, hashlib.sha256).digest()[:16],
            raw[16:])

    def keys(self, challenge, hint, win_c=KPT_WINDOW, win_s=KPT_WINDOW):
        """(K_c2s, K_s2c) of a connection, whose client and server
        announced windows win_c and win_s ("TunneldWindow" of the
        AuthResponse and of the AuthResult; kptunnel's when absent)."""
        salt = (challenge + hint).encode() + struct.pack(">II", win_c,
                                                          win_s)
        return (self._hkdf(salt, LABEL + b" c2s"),
                self._hkdf(salt, LABEL + b" s2c"))


def nonce(n):
    """The nonce of the n-th NORMAL packet of a direction (from 0)."""
    return b"\0" * 4 + struct.pack(">Q", n)


def normal_header(citi, length):
    return struct.pack(">BIH", G.KIND_NORMAL, citi, length)


# --------------------------------------------------------------------------
# What the relay sees


class Pkt:
    """One packet of the session phase, as the sender sent it.

    kind, citi; raw (the packet's bytes); payload (NORMAL: as on the wire;
    SYNC in the AEAD mode: its tag); n and seq (its index among this
    flow's session NORMAL and SYNC packets: the AEAD counter, and what
    WriteNo/ReadNo count); plain (NORMAL: the payload
    opened or decrypted, None if it did not open); packno (SYNC)."""

    __slots__ = ("kind", "citi", "raw", "payload", "n", "seq", "plain",
                 "packno")

    def __init__(self, p, n, seq):
        self.kind, self.citi, self.raw = p.kind, p.citi, p.raw
        self.payload, self.packno = p.payload, p.packno
        self.n, self.seq, self.plain = n, seq, None

    def is_data(self):
        """A NORMAL packet of a stream with bytes in it."""
        return (self.kind == G.KIND_NORMAL and self.citi != 0 and
                self.plain is not None and len(self.plain) > 0)


class Flow:
    """One direction ("c2s" or "s2c") of one relayed connection."""

    def __init__(self, conn, name):
        self.conn = conn
        self.name = name
        self.dst = None                  # the socket it is relayed to
        epw = conn.relay.secrets.epw
        self.dec = G.Cfb(epw, -1, decrypt=True)
        self.enc = G.Cfb(epw, -1)
        self.head = conn.relay.ws        # an HTTP head comes first
        self.tbuf = b""                  # transport bytes not yet parsed
        self.pbuf = b""                  # packet bytes not yet parsed
        self.lack = len(G.LACK)
        self.hs_left = HS_PACKETS[name]
        self.hs_index = 0
        self.gcm = None
        self.ctr = 0                     # session NORMAL + SYNC packets
        self.seq = 0                     # session NORMAL + SYNC packets seen
        self.opened = 0
        self.failed = 0
        self.cfb = 0
        self.syncs = 0
        self.dummies = 0
        self.data = {}                   # citi -> bytearray of plaintext

    def session(self):
        """Whether the handshake of this direction is over."""
        return self.hs_left == 0


class Conn:
    """One relayed connection: its two flows and its handshake."""

    def __init__(self, relay, index):
        self.relay = relay
        self.index = index               # 0 for the first connection
        self.c2s = Flow(self, "c2s")
        self.s2c = Flow(self, "s2c")
        self.challenge = self.hint = None
        self.win_c = KPT_WINDOW          # the client's announced window
        self.mode = None                 # "aead" or "cfb" once known
        self.cut = False
        self.socks = []
        self.ends = 0
        self.lock = threading.Lock()


class WireRelay:
    """See the module's doc.  upstream: the server's port on 127.0.0.1."""

    def __init__(self, upstream, secrets, ws=False, rewrite=None,
                 tamper=None, flip_at=None, flip_dir="c2s"):
        self.upstream = upstream
        self.secrets = secrets
        self.ws = ws
        self.rewrite = rewrite
        self.tamper = tamper
        self.flip_at = flip_at
        self.flip_dir = flip_dir
        self.active = rewrite is not None or tamper is not None
        self.flipped = 0
        self.conns = 0
        self.connections = []            # Conn, in accept order
        self.dirs = []                   # (c2s, s2c) per connection
        self.seen = {}                   # the last Challenge and Hint
        self.errors = []                 # exceptions of the pumps
        self.lock = threading.Lock()
        self.lsn = socket.create_server((HOST, 0))
        self.port = self.lsn.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        """Stops accepting (live connections go on until their peers
        close them: a cut here would make a client reconnect while it is
        being stopped)."""
        try:
            # Wakes the thread blocked in accept(), which close() does not.
            self.lsn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsn.close()

    def cut_all(self):
        """Ends every live connection as a CUT does."""
        with self.lock:
            conns = list(self.connections)
        for c in conns:
            self._cut(c)

    def session_conns(self):
        """The connections whose handshake got through to the session."""
        with self.lock:
            return [c for c in self.connections if c.s2c.session()]

    # ---------------------------------------------------------- relaying

    def _accept(self):
        while True:
            try:
                c, _ = self.lsn.accept()
            except OSError:
                return
            try:
                u = socket.create_connection((HOST, self.upstream))
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                conn = Conn(self, self.conns)
                self.conns += 1
                self.connections.append(conn)
                self.dirs.append((conn.c2s, conn.s2c))
            conn.socks = [c, u]
            conn.c2s.dst, conn.s2c.dst = u, c
            for src, dst, flow in ((c, u, conn.c2s), (u, c, conn.s2c)):
                threading.Thread(target=self._pump,
                                 args=(conn, src, dst, flow),
                                 daemon=True).start()

    def _pump(self, conn, src, dst, flow):
        off = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if conn.cut:
                    continue            # read and dropped
                if self.flip_at is not None:
                    if (conn.index == 0 and flow.name == self.flip_dir and
                            off <= self.flip_at < off + len(data)):
                        b = bytearray(data)
                        b[self.flip_at - off] ^= 1
                        data = bytes(b)
                        self.flipped += 1
                    off += len(data)
                    dst.sendall(data)
                    continue
                out, cut = self._feed(flow, data)
                if self.active:
                    data = out
                if data:
                    dst.sendall(data)
                if cut:
                    self._cut(conn, flow)
        except OSError:
            pass
        except Exception as e:          # noqa: B902 - the test reports it
            self.errors.append("%s %d: %s: %s" % (flow.name, conn.index,
                                                  type(e).__name__, e))
        finally:
            if conn.cut:
                # The end reaches the peer that sent into the cut only
                # once the other has closed (see _cut).
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            else:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            with conn.lock:
                conn.ends += 1
                last = conn.ends == 2
            if last:
                for s in conn.socks:
                    s.close()

    @staticmethod
    def _cut(conn, flow=None):
        """Ends conn: its peers get what was forwarded, then the end of the
        stream (FIN, not a reset, so that nothing forwarded is lost); what
        they send from now on is read and dropped until they close.  With
        flow, its receiver gets the end first and its sender only once
        the receiver has closed: a sender that reconnects at once would
        otherwise make the receiver drop the connection before it read
        the last packets."""
        with conn.lock:
            if conn.cut:
                return
            conn.cut = True
        for s in [flow.dst] if flow is not None else conn.socks:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    # ----------------------------------------------------------- parsing

    def _feed(self, flow, data):
        """Parses data; returns (the bytes to forward when active, cut)."""
        if not self.ws:
            return self._packets(flow, data)
        flow.tbuf += data
        out = b""
        if flow.head:
            i = flow.tbuf.find(b"\r\n\r\n")
            if i < 0:
                return out, False
            out += flow.tbuf[:i + 4]
            flow.tbuf = flow.tbuf[i + 4:]
            flow.head = False
        while True:
            fr, used = G.parse_frame(flow.tbuf)
            if fr is None:
                return out, False
            flow.tbuf = flow.tbuf[used:]
            if fr.opcode not in (0, 1, 2):
                out += fr.raw           # ping, pong, close: as they are
                continue
            o, cut = self._packets(flow, fr.payload)
            if o:
                out += G.build_frame(o, opcode=2, mask=flow.name == "c2s")
            if cut:
                return out, True

    def _packets(self, flow, data):
        """Parses packet-stream bytes; returns (bytes to send, cut)."""
        flow.pbuf += data
        out = []
        if flow.lack:
            n = min(flow.lack, len(flow.pbuf))
            out.append(flow.pbuf[:n])
            flow.pbuf = flow.pbuf[n:]
            flow.lack -= n
        while flow.pbuf:
            p, used = G.parse_packet(flow.pbuf)
            if p is None:
                break
            if p.kind == G.KIND_SYNC and flow.session() and \
                    flow.conn.mode == "aead":
                # The mode seals SYNCs too: a tag follows the 13 bytes.
                if len(flow.pbuf) < used + TAG_LEN:
                    break
                p.payload = bytes(flow.pbuf[used:used + TAG_LEN])
                p.raw = bytes(flow.pbuf[:used + TAG_LEN])
                used += TAG_LEN
            flow.pbuf = flow.pbuf[used:]
            if not flow.session():
                if p.kind != G.KIND_NORMAL:
                    out.append(p.raw)
                    continue
                out.append(self._handshake(flow, p))
                continue
            pkt = self._session(flow, p)
            sent = self.tamper(flow, pkt) if self.tamper else None
            if sent is None:
                out.append(pkt.raw)
                continue
            for s in sent:
                if s is CUT:
                    return b"".join(out), True
                out.append(s)
        return b"".join(out), False

    def _handshake(self, flow, p):
        conn = flow.conn
        idx = flow.hs_index
        flow.hs_index += 1
        flow.hs_left -= 1
        plain = flow.dec(p.payload)
        if self.rewrite is not None:
            new = self.rewrite(flow.name, idx, plain)
            assert len(new) == len(plain)
            plain = new
        s = plain.decode("latin-1")
        try:
            msg = json.loads(s)
        except ValueError:
            msg = None
        if isinstance(msg, dict):
            if "Challenge" in msg:
                conn.challenge = self.seen["challenge"] = msg["Challenge"]
            if "Hint" in msg:
                conn.hint = self.seen["hint"] = msg["Hint"]
                conn.win_c = msg.get(WINDOW_KEY, KPT_WINDOW)
        if flow.name == "c2s" and conn.mode is None and \
                conn.challenge is not None and conn.hint is not None:
            sec = self.secrets
            if sec.mark_ok(b"challenge", "", conn.challenge) and \
                    sec.mark_ok(b"hint", conn.challenge, conn.hint):
                conn.mode = "aead"
            else:
                conn.mode = "cfb"
        # The keys need the server's window too: its AuthResult says it,
        # before either side seals anything.
        if flow.name == "s2c" and conn.mode == "aead" and \
                isinstance(msg, dict) and "Result" in msg:
            k_c2s, k_s2c = self.secrets.keys(
                conn.challenge, conn.hint, conn.win_c,
                msg.get(WINDOW_KEY, KPT_WINDOW))
            conn.c2s.gcm, conn.s2c.gcm = AESGCM(k_c2s), AESGCM(k_s2c)
        return normal_header(p.citi, len(plain)) + flow.enc(plain)

    def _session(self, flow, p):
        pkt = Pkt(p, flow.ctr, flow.seq)
        if p.kind == G.KIND_DUMMY:
            flow.dummies += 1
            return pkt
        flow.seq += 1
        flow.ctr += 1
        if p.kind == G.KIND_SYNC:
            flow.syncs += 1
            if flow.conn.mode == "aead":
                try:
                    flow.gcm.decrypt(nonce(pkt.n), p.payload, p.raw[:13])
                    flow.opened += 1
                except Exception:       # noqa: B902 - InvalidTag
                    flow.failed += 1
            return pkt
        if flow.conn.mode == "aead":
            try:
                pkt.plain = flow.gcm.decrypt(nonce(pkt.n), p.payload,
                                             p.raw[:7])
                flow.opened += 1
            except Exception:           # noqa: B902 - InvalidTag
                flow.failed += 1
        else:
            pkt.plain = flow.dec(p.payload)
            flow.cfb += 1
        if pkt.plain and p.citi != 0:
            flow.data.setdefault(p.citi, bytearray()).extend(pkt.plain)
        return pkt
