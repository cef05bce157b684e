// Real Java Edition server (npm minecraft-protocol) answering Server List Ping and the legacy ping.
// Usage: NODE_PATH=.cache/peers/npm-java/node_modules node java_slp_server.js PORT ONLINE MAX MOTD
const mc = require('minecraft-protocol')
const [port, online, max, motd] = process.argv.slice(2)
const server = mc.createServer({
  'online-mode': false, host: '127.0.0.1', port: Number(port), motd, maxPlayers: Number(max), version: '1.20.4',
  beforePing: (resp) => {
    resp.players.online = Number(online)
    resp.players.sample = [{ name: 'alice', id: '00000000-0000-0000-0000-000000000001' }]
    return resp
  }
})
server.playerCount = Number(online) // the legacy (pre-1.7) ping reads this
server.on('listening', () => console.log(`listening ${port}`))
