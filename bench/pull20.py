#!/usr/bin/env python3
"""20 concurrent GETs of one blob (raw sockets, 4 MB receives, so that the
client costs little beside the kernel's copy): prints the best of 3 in
MB/s.  usage: pull20.py HOST:PORT PATH [discard]
With "discard", the clients receive with MSG_TRUNC: the kernel drops the
bytes without copying them to the client, so that the clients' copies
(which share the 2 cores with the server) no longer cap what is measured
and the figure is the server's own."""
import socket, sys, threading, time
DISCARD = len(sys.argv) > 3 and sys.argv[3] == "discard"
def get(host, path):
    h, p = host.split(":")
    s = socket.create_connection((h, int(p)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    buf = bytearray(4 << 20)
    mv = memoryview(buf)
    total = 0
    while True:
        n = s.recv_into(mv, 0, socket.MSG_TRUNC) if DISCARD else s.recv_into(mv)
        if n == 0:
            break
        total += n
    s.close()
    return total
def run(host, path, n=20):
    got = []
    ts = [threading.Thread(target=lambda: got.append(get(host, path))) for _ in range(n)]
    t = time.perf_counter()
    for x in ts: x.start()
    for x in ts: x.join()
    dt = time.perf_counter() - t
    return sum(got) / dt / 1e6
host, path = sys.argv[1], sys.argv[2]
print(round(max(run(host, path) for _ in range(3))))
