#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/) from the byte layouts of
docs/game-protocols.md. Seeds captured from the real peers (minecraft-protocol, bedrock-protocol)
were added by hand as *-real-*.bin. Re-run to regenerate the synthetic seeds."""
import json, os, struct
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)


def varint(n):
    n &= 0xffffffff
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def slp_frame(obj_or_text, trailing=b""):
    text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
    body = b"\x00" + varint(len(text.encode())) + text.encode() + trailing
    return varint(len(body)) + body


put("java", "reference-status", slp_frame({"version": {"name": "1.21.1", "protocol": 767}, "enforcesSecureChat": True,
    "description": {"text": "A Minecraft Server"}, "players": {"max": 20, "online": 2, "sample": [
        {"name": "alice", "id": "4566e69f-c907-48ee-8d71-d7ba5aa00d20"}]}, "favicon": "data:image/png;base64,AAAA"}))
put("java", "starting-no-players", slp_frame({"version": {"name": "1.20.6", "protocol": 766}, "description": ""}))
put("java", "chat-component", slp_frame({"players": {"max": 100, "online": 42}, "description": {"text": "a", "extra": [
    {"text": "b", "color": "red"}, ["c", {"translate": "d"}]]}, "version": {"name": "Velocity 3.3.0", "protocol": 767}}))
put("java", "forge-data", slp_frame({"players": {"max": 10, "online": 1}, "version": {"name": "1.20.1", "protocol": 763},
    "forgeData": {"channels": [], "mods": [], "truncated": False, "d": "\u0100\u2000" * 64}, "description": "modded"}))
put("java", "trailing-bytes", slp_frame({"players": {"max": 5, "online": 5}}, b"\x01\x02bcc"))
put("java", "string-counts", slp_frame('{"players":{"max":"20","online":3.0}}'))

def kick(s):
    units = s.encode("utf-16-be")
    return b"\xff" + struct.pack(">H", len(units) // 2) + units

put("legacy", "v1_4", kick("\u00a71\x00127\x001.20.4\x00A Minecraft Server\x007\x0050"))
put("legacy", "beta", kick("\u00a7cRed\u00a7r lobby\u00a73\u00a720"))

def cstr(s):
    return s.encode() + b"\0"

put("query", "handshake", bytes.fromhex("09 00 00 00 01 39 35 31 33 33 30 37 00"))
put("query", "basic", b"\x00\x00\x00\x00\x01" + cstr("A Minecraft Server") + cstr("SMP") + cstr("world") + cstr("2")
    + cstr("20") + struct.pack("<H", 25565) + cstr("0.0.0.0"))
kv = {"hostname": "A Minecraft Server", "gametype": "SMP", "game_id": "MINECRAFT", "version": "1.20.4", "plugins": "",
      "map": "world", "numplayers": "2", "maxplayers": "20", "hostport": "25565", "hostip": "127.0.0.1"}
put("query", "full", b"\x00\x00\x00\x00\x01splitnum\0\x80\0" + b"".join(cstr(k) + cstr(v) for k, v in kv.items())
    + b"\0\x01player_\0\0" + cstr("alice") + cstr("bob") + b"\0")

MAGIC = bytes.fromhex("00ffff00fefefefefdfdfdfd12345678")

def pong(s):
    b = s.encode()
    return b"\x1c" + bytes.fromhex("0000018c2f3a4b5c") + bytes.fromhex("bd7d455cd876f722") + MAGIC + struct.pack(">H", len(b)) + b

put("bedrock", "reference", pong("MCPE;Dedicated Server;527;1.19.1;0;10;13253860892328930865;Bedrock level;Survival;1;19132;19133;"))
put("bedrock", "six-fields", pong("MCPE;lobby;766;1.21.50;3;40"))
put("bedrock", "pmmp-escaped", pong("MCPE;a\\;b;766;1.21.50;3;40;123;world;Survival;1;19132;19133;0;"))

put("a2s", "tf2-real-capture", bytes.fromhex(
    "ffffffff49114c696e757847534d006b6f74685f686172766573745f6576656e7400746600"
    "5465616d20466f7274726573730 0b80100200064 6c000136383330383939 00b18769"
    "07f8d10be648400163702c696e637265617365645f6d6178706c617965727300b801000000000000".replace(" ", "")))
put("a2s", "challenge", bytes.fromhex("ffffffff4129f9d53c"))
put("a2s", "rust-keywords", b"\xff\xff\xff\xffI\x11" + cstr("Rust") + cstr("Procedural Map") + cstr("rust") + cstr("Rust")
    + bytes([0x1c, 0x03, 200, 44, 0]) + b"dl\x00\x01" + cstr("2400") + b"\xa0" + struct.pack("<H", 28015)
    + cstr("mp300,cp260,qp5"))
put("a2s", "the-ship", b"\xff\xff\xff\xffI\x07" + cstr("ship") + cstr("map") + cstr("ship") + cstr("The Ship")
    + struct.pack("<H", 2400) + bytes([3, 16, 0]) + b"dw\x00\x00" + bytes([1, 2, 3]) + cstr("1.0"))
