#!/usr/bin/env python3
"""Stand-in UDP game servers written from the specs (no server implementation exists in any
registry we reach): Source A2S_INFO with the Dec-2020 challenge, and Minecraft Query (GameSpy4)
handshake + basic/full stat. The tests prove each one right with an independent client
(python-a2s, mcstatus) before the agent is tested against it.

Usage: udp_game_peers.py a2s|query PORT ONLINE MAX [--no-challenge] [--keywords KW]
Prints "listening PORT" when bound.
"""
import argparse, asyncio, os, struct

ap = argparse.ArgumentParser()
ap.add_argument("kind", choices=["a2s", "query"])
ap.add_argument("port", type=int)
ap.add_argument("online", type=int)
ap.add_argument("max", type=int)
ap.add_argument("--no-challenge", action="store_true")
ap.add_argument("--keywords")
args = ap.parse_args()
NAMES = [f"player{i}" for i in range(args.online)]
HDR = b"\xff\xff\xff\xff"
CHALLENGE = os.urandom(4)


def cstr(s):
    return s.encode() + b"\0"


class A2S(asyncio.DatagramProtocol):
    def connection_made(self, t):
        self.t = t

    def datagram_received(self, d, addr):
        if d.startswith(HDR + b"TSource Engine Query\0"):
            if not args.no_challenge and d[25:29] != CHALLENGE:
                return self.t.sendto(HDR + b"A" + CHALLENGE, addr)
            players = min(args.online, 255)
            mx = args.max % 256
            body = (b"I\x11" + cstr("peer-test srcds") + cstr("de_dust2") + cstr("cstrike")
                    + cstr("Counter-Strike") + struct.pack("<HBBB", 240, players, mx, 0)
                    + b"dl\x00\x01" + cstr("1.0.0.0"))
            if args.keywords:
                body += b"\xa0" + struct.pack("<H", args.port) + cstr(args.keywords)  # EDF: port + keywords
            self.t.sendto(HDR + body, addr)
        elif d.startswith(HDR + b"U"):
            if d[5:9] != CHALLENGE:
                return self.t.sendto(HDR + b"A" + CHALLENGE, addr)
            body = b"D" + bytes([len(NAMES)]) + b"".join(
                bytes([i]) + cstr(n) + struct.pack("<lf", 10 * i, 60.0 * i) for i, n in enumerate(NAMES))
            self.t.sendto(HDR + body, addr)


class Query(asyncio.DatagramProtocol):
    """Vanilla QueryThreadGs4 semantics: token per client address, reply echoes the session id
    stored at handshake time, full stat iff the request is exactly 15 bytes."""
    def connection_made(self, t):
        self.t = t
        self.tokens = {}

    def datagram_received(self, d, addr):
        if len(d) < 7 or d[:2] != b"\xfe\xfd":
            return
        kind, sid = d[2], d[3:7]
        if kind == 9:
            token = int.from_bytes(os.urandom(3), "big")
            self.tokens[addr] = (token, sid)
            return self.t.sendto(b"\x09" + sid + cstr(str(token)), addr)
        if kind != 0 or len(d) < 11 or addr not in self.tokens:
            return
        token, stored_sid = self.tokens[addr]
        if struct.unpack(">i", d[7:11])[0] != token:
            return
        if len(d) == 15:
            kv = {"hostname": "peer-test query", "gametype": "SMP", "game_id": "MINECRAFT",
                  "version": "1.20.4", "plugins": "", "map": "world", "numplayers": str(args.online),
                  "maxplayers": str(args.max), "hostport": str(args.port), "hostip": "127.0.0.1"}
            body = (b"splitnum\0\x80\0" + b"".join(cstr(k) + cstr(v) for k, v in kv.items()) + b"\0"
                    + b"\x01player_\0\0" + b"".join(cstr(n) for n in NAMES) + b"\0")
        else:
            body = (cstr("peer-test query") + cstr("SMP") + cstr("world") + cstr(str(args.online))
                    + cstr(str(args.max)) + struct.pack("<H", args.port) + cstr("127.0.0.1"))
        self.t.sendto(b"\x00" + stored_sid + body, addr)


async def main():
    loop = asyncio.get_running_loop()
    proto = A2S if args.kind == "a2s" else Query
    await loop.create_datagram_endpoint(proto, local_addr=("127.0.0.1", args.port))
    print(f"listening {args.port}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
