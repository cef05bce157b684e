// Real Bedrock server (npm bedrock-protocol, jsp-raknet backend) answering unconnected pings.
// Usage: NODE_PATH=.cache/peers/npm-bedrock/node_modules node bedrock_server.js PORT ONLINE MAX MOTD
const bedrock = require('bedrock-protocol/src/createServer') // not the index: it loads raknet-native eagerly
const { ServerAdvertisement } = require('bedrock-protocol/src/server/advertisement')
const [port, online, max, motd] = process.argv.slice(2)
const ad = new ServerAdvertisement({ motd, levelName: 'peer-world' }, Number(port))
ad.playersOnline = Number(online)
ad.playersMax = Number(max)
bedrock.createServer({
  host: '127.0.0.1', port: Number(port), offline: true, maxPlayers: Number(max),
  raknetBackend: 'jsp-raknet', advertisementFn: () => ad
})
console.log(`listening ${port}`)
