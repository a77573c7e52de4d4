#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A browser's requests to a ferryd, for the e2e tests of the web API (tests/e2e/test_web_api.py),
run inside the lab's client namespace; prints one JSON object.

  webclient.py http METHOD URL [-H 'Name: value']... [--body TEXT]
      {"status", "headers": [[name, value]...], "body", "elapsed_s"}
  webclient.py console URL [-H ...] [--send TEXT] [--expect TEXT] [--timeout S] [--fragment]
      opens the console WebSocket (RFC 6455 client: masked frames), types TEXT (in two
      fragments with a ping between them when --fragment), reads until EXPECT shows up:
      {"status", "headers", "upgraded", "accept_ok", "output", "found", "pong", "close"}
  webclient.py vnc URL [-H ...] [--timeout S]
      opens the screen WebSocket and speaks RFB 3.8 (RFC 6143) over its binary messages as
      noVNC does: version, security type None, ClientInit, ServerInit, one full framebuffer
      update in raw encoding:
      {"status", "headers", "upgraded", "accept_ok", "version", "security", "width", "height",
       "name", "pixels", "colours"} (pixels: bytes of the update; colours: distinct ones seen)
  An https:// URL is verified against --ca FILE (default: $FERRY_CA, the lab's CA), as a
  browser that trusts the cluster's CA would; never unverified.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def parse_headers(hs):
    out = []
    for h in hs or []:
        k, _, v = h.partition(":")
        out.append((k.strip(), v.strip()))
    return out


def tls_context(a):
    if not a.ca:
        raise SystemExit("webclient: https needs --ca FILE or FERRY_CA")
    return ssl.create_default_context(cafile=a.ca)


def do_http(a):
    u = urllib.parse.urlsplit(a.url)
    if u.scheme == "https":
        c = http.client.HTTPSConnection(u.hostname, u.port, timeout=a.timeout,
                                        context=tls_context(a))
    else:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
    path = u.path + (f"?{u.query}" if u.query else "")
    t0 = time.monotonic()
    c.putrequest(a.method, path, skip_accept_encoding=True)
    body = a.body.encode() if a.body is not None else None
    for k, v in parse_headers(a.header):
        c.putheader(k, v)
    if body is not None:
        c.putheader("Content-Length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    data = r.read()
    return {"status": r.status, "headers": r.getheaders(),
            "body": data.decode("utf-8", "replace"), "elapsed_s": time.monotonic() - t0}


def frame(opcode, payload, fin=True):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Frames:
    def __init__(self, sock, buf=b""):
        self.sock, self.buf = sock, buf

    def next(self, deadline):
        """(fin, opcode, payload) or None at the deadline or end of stream."""
        while True:
            f = self._parse()
            if f:
                return f
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not d:
                return None
            self.buf += d

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin, op, masked, n = b[0] & 0x80, b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F
        i = 2
        if n == 126:
            if len(b) < 4:
                return None
            n, i = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, i = struct.unpack("!Q", b[2:10])[0], 10
        if masked:
            raise ValueError("the server sent a masked frame (RFC 6455 5.1 forbids it)")
        if len(b) < i + n:
            return None
        self.buf = b[i + n:]
        return bool(fin), op, b[i:i + n]


def ws_open(a):
    """The opening handshake: (socket, Frames, out) with out's status, headers, upgraded,
    accept_ok (and body when refused)."""
    u = urllib.parse.urlsplit(a.url)
    s = socket.create_connection((u.hostname, u.port), timeout=a.timeout)
    if u.scheme in ("https", "wss"):
        s = tls_context(a).wrap_socket(s, server_hostname=u.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    req = [f"GET {u.path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Upgrade: websocket",
           "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    req += [f"{k}: {v}" for k, v in parse_headers(a.header)]
    s.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
    buf = b""
    deadline = time.monotonic() + a.timeout
    while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:] if ":" in ln]
    out = {"status": status, "headers": headers, "upgraded": status == 101}
    if status != 101:
        out["body"] = rest.decode("utf-8", "replace")
        return s, None, out
    want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    out["accept_ok"] = dict((k.lower(), v) for k, v in headers).get("sec-websocket-accept") == want
    return s, Frames(s, rest), out


class RfbStream:
    """The bytes of the binary messages, read as a stream (RFB does not follow messages)."""

    def __init__(self, frames, deadline):
        self.fr, self.deadline, self.buf = frames, deadline, b""

    def read(self, n):
        while len(self.buf) < n:
            f = self.fr.next(self.deadline)
            if f is None:
                raise TimeoutError(f"RFB: {len(self.buf)} of {n} bytes before the deadline")
            if f[1] == 0x8:
                raise ConnectionError(f"RFB: closed by the server: {f[2]!r}")
            if f[1] == 0x1:
                raise ValueError("RFB: a text frame (the screen sends binary ones)")
            if f[1] in (0x0, 0x2):
                self.buf += f[2]
        d, self.buf = self.buf[:n], self.buf[n:]
        return d


def rfb_session(read, send):
    """noVNC's half of RFB 3.8 (RFC 6143) up to one full framebuffer update in raw 32-bit
    pixels: read(n) returns n bytes of the server's stream, send(b) sends bytes. Returns
    {"version", "security", "width", "height", "name", "pixels", "colours", "sha256"}."""
    out = {"version": read(12).decode("latin-1")}
    send(b"RFB 003.008\n")
    types = list(read(read(1)[0]))
    out["security"] = types
    if 1 not in types:
        return out
    send(b"\x01")
    if struct.unpack("!I", read(4))[0] != 0:
        out["security_failed"] = True
        return out
    send(b"\x01")  # ClientInit: shared
    w, h = struct.unpack("!HH", read(4))
    read(16)  # the server's pixel format
    out.update({"width": w, "height": h,
                "name": read(struct.unpack("!I", read(4))[0]).decode("utf-8", "replace")})
    # 32-bit true colour, raw encoding only, then one full update.
    pf = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    send(b"\x00\x00\x00\x00" + pf)
    send(struct.pack("!BxHi", 2, 1, 0))
    send(struct.pack("!BBHHHH", 3, 0, 0, 0, w, h))
    fb = bytearray(w * h * 4)
    pixels, colours = 0, set()
    while pixels < w * h * 4:
        t = read(1)[0]
        if t != 0:  # not a FramebufferUpdate: a bell (no payload) may come first
            if t == 2:
                continue
            raise ValueError(f"RFB: unexpected message type {t}")
        read(1)
        for _ in range(struct.unpack("!H", read(2))[0]):
            x, y, rw, rh, enc = struct.unpack("!HHHHi", read(12))
            if enc != 0:
                continue  # a pseudo-encoding carries no pixels
            data = read(rw * rh * 4)
            for row in range(rh):
                at = ((y + row) * w + x) * 4
                fb[at:at + rw * 4] = data[row * rw * 4:(row + 1) * rw * 4]
            pixels += len(data)
            colours.update(data[i:i + 3] for i in range(0, len(data), 4 * 97))
    out.update({"pixels": pixels, "colours": len(colours),
                "sha256": hashlib.sha256(bytes(fb)).hexdigest()})
    return out


def rfb_unix(path, timeout=20):
    """rfb_session on a VNC server's unix socket (QEMU's -vnc unix:PATH)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    buf = bytearray()

    def read(n):
        while len(buf) < n:
            d = s.recv(65536)
            if not d:
                raise ConnectionError(f"RFB: {path} closed")
            buf.extend(d)
        d = bytes(buf[:n])
        del buf[:n]
        return d
    try:
        return rfb_session(read, s.sendall)
    finally:
        s.close()


def do_vnc(a):
    s, fr, out = ws_open(a)
    if not fr:
        return out
    rfb = RfbStream(fr, time.monotonic() + a.timeout)
    out.update(rfb_session(rfb.read, lambda b: s.sendall(frame(0x2, b))))
    s.sendall(frame(0x8, struct.pack("!H", 1000)))
    s.close()
    return out


def do_console(a):
    s, fr, out = ws_open(a)
    if not fr:
        return out
    deadline = time.monotonic() + a.timeout
    text, pong, close = "", False, None
    if a.send is not None:
        data = a.send.encode()
        if a.fragment and len(data) > 1:
            half = len(data) // 2
            s.sendall(frame(0x1, data[:half], fin=False) + frame(0x9, b"ping!") +
                      frame(0x0, data[half:]))
        else:
            s.sendall(frame(0x1, data))
    while time.monotonic() < deadline:
        f = fr.next(deadline)
        if f is None:
            break
        fin, op, payload = f
        if op in (0x1, 0x2, 0x0):
            text += payload.decode("utf-8", "replace")
        elif op == 0xA:
            pong = payload == b"ping!"
        elif op == 0x8:
            close = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            break
        if a.expect is not None and a.expect in text and (pong or not a.fragment):
            break
    out.update({"output": text, "found": a.expect is not None and a.expect in text,
                "pong": pong})
    if close is None:
        s.sendall(frame(0x8, struct.pack("!H", 1000)))
        f = fr.next(time.monotonic() + 5)
        while f is not None and f[1] != 0x8:
            f = fr.next(time.monotonic() + 5)
        close = (struct.unpack("!H", f[2][:2])[0] if f and len(f[2]) >= 2 else None)
    out["close"] = close
    s.close()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["http", "console", "vnc"])
    p.add_argument("args", nargs="+")
    p.add_argument("-H", "--header", action="append")
    p.add_argument("--body")
    p.add_argument("--send")
    p.add_argument("--expect")
    p.add_argument("--fragment", action="store_true")
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--ca", default=os.environ.get("FERRY_CA", ""))
    a = p.parse_args()
    if a.mode == "http":
        a.method, a.url = a.args
        print(json.dumps(do_http(a)))
    elif a.mode == "vnc":
        (a.url,) = a.args
        print(json.dumps(do_vnc(a)))
    else:
        (a.url,) = a.args
        print(json.dumps(do_console(a)))


if __name__ == "__main__":
    sys.exit(main())
