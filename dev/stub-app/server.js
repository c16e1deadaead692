// Dev stand-in for the CareCircle api: answers the health endpoints the gateway and Docker use.
// /ready checks that postgres, redis and rabbitmq accept TCP connections.
const http = require("http");
const net = require("net");

const port = Number(process.env.PORT || 3000);

function reachable(url) {
  return new Promise((resolve) => {
    if (!url) return resolve(false);
    const { hostname, port } = new URL(url);
    const socket = net.connect({ host: hostname, port: Number(port), timeout: 2000 });
    socket.once("connect", () => { socket.destroy(); resolve(true); });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => { socket.destroy(); resolve(false); });
  });
}

const server = http.createServer(async (req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const path = req.url.split("?")[0];
  if (path === "/health" || path === "/live") return reply(200, { status: "ok" });
  if (path === "/ready") {
    const checks = {
      database: await reachable(process.env.DATABASE_URL),
      redis: await reachable(process.env.REDIS_URL),
      rabbitmq: await reachable(process.env.RABBITMQ_URL),
    };
    const ready = Object.values(checks).every(Boolean);
    return reply(ready ? 200 : 503, { status: ready ? "ready" : "not ready", checks });
  }
  reply(200, { stub: "carecircle-api", method: req.method, url: req.url });
});
server.keepAliveTimeout = 5000;
server.listen(port, () => console.log(`stub api listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
