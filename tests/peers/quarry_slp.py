"""Real Java Edition status server from PyPI quarry (Twisted).
Usage: PYTHONPATH=.cache/peers/py python3 quarry_slp.py PORT ONLINE MAX MOTD"""
import sys
from twisted.internet import reactor
from quarry.net.server import ServerFactory, ServerProtocol

PORT, ONLINE, MAX, MOTD = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


class P(ServerProtocol):
    def packet_status_request(self, buff):
        self.send_packet("status_response", self.buff_type.pack_json({
            "description": {"text": MOTD}, "players": {"online": ONLINE, "max": MAX, "sample": []},
            "version": {"name": "1.20.4", "protocol": 765}}))


f = ServerFactory()
f.protocol = P
f.online_mode = False
f.motd = MOTD
f.max_players = MAX
f.listen("127.0.0.1", PORT)
reactor.run()
