// Real OpAMP server: npm @elastic/mockopampserver 0.5.0 (HTTP transport) in its test mode, on
// loopback. Test mode keeps every exchange (testGetRequests: request headers, the decoded
// AgentToServer, the ServerToAgent sent back) and enables its /api/agentConfigMap route to change
// the offered remote configuration. A second loopback port serves those exchanges as protobuf
// JSON (GET /requests) so a Rust test can read them.
// Usage: NODE_PATH=.cache/peers/npm-opamp/node_modules node opamp_server.js [badMode|-] [port]
// With OPAMP_TLS_DIR set, it serves HTTPS with ca.crt, server.crt, server.key from there and
// requires a client certificate signed by that CA (mutual TLS).
// Prints one JSON line {"endpoint": ..., "control": port} when both listen.
const fs = require('fs')
const http = require('http')
const path = require('path')
const { toJson } = require('@bufbuild/protobuf')
const { MockOpAMPServer } = require('@elastic/mockopampserver')
const { AgentToServerSchema, ServerToAgentSchema } =
  require('@elastic/mockopampserver/lib/generated/opamp_pb.js')

async function main () {
  const opts = { logLevel: 'warn', hostname: '127.0.0.1', port: 0, testMode: true }
  if (process.argv[2] && process.argv[2] !== '-') opts.badMode = process.argv[2]
  if (process.argv[3]) opts.port = Number(process.argv[3])
  const tls = process.env.OPAMP_TLS_DIR
  if (tls) {
    opts.ca = fs.readFileSync(path.join(tls, 'ca.crt'))
    opts.cert = fs.readFileSync(path.join(tls, 'server.crt'))
    opts.key = fs.readFileSync(path.join(tls, 'server.key'))
    opts.requestCert = true
  }
  const server = new MockOpAMPServer(opts)
  await server.start()
  const control = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/requests') {
      const out = server.testGetRequests().map((r) => ({
        method: r.req && r.req.method,
        headers: r.req && r.req.headers,
        status: r.res && r.res.statusCode,
        a2s: r.a2s ? toJson(AgentToServerSchema, r.a2s) : null,
        s2a: r.s2a ? toJson(ServerToAgentSchema, r.s2a) : null,
        err: r.err ? String(r.err) : null
      }))
      const body = JSON.stringify(out)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    } else {
      res.writeHead(404)
      res.end()
    }
  })
  control.listen(0, '127.0.0.1', () => {
    console.log(JSON.stringify({ endpoint: server.endpoint, control: control.address().port }))
  })
}

main().catch((e) => { console.error(e); process.exit(1) })
