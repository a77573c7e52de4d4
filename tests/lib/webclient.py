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


def do_console(a):
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
        # The refusal's body (JSON error) follows its headers.
        out["body"] = rest.decode("utf-8", "replace")
        return out
    want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    out["accept_ok"] = dict((k.lower(), v) for k, v in headers).get("sec-websocket-accept") == want
    fr = Frames(s, rest)
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
    p.add_argument("mode", choices=["http", "console"])
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
    else:
        (a.url,) = a.args
        print(json.dumps(do_console(a)))


if __name__ == "__main__":
    sys.exit(main())
