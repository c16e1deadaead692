// Stand-in for the CareCircle api (dev stack and swarm tests). Honours the image contract:
// - PORT (default 3000); GET /health, /live (the process answers) and /ready (its dependencies answer).
// - Every secret may come as <NAME>_FILE (e.g. DATABASE_URL_FILE=/run/secrets/database_url); plain
//   <NAME> still works.
// - SIGTERM: keep serving for SHUTDOWN_DELAY_SECONDS (default 0; /ready answers 503 meanwhile) so
//   gateways that re-resolve DNS stop sending, then stop accepting, finish in-flight requests, exit 0.
// - Every response says who answered (x-standin-pool from OTEL_RESOURCE_ATTRIBUTES carecircle.pool,
//   x-standin-task = HOSTNAME, x-standin-version = STANDIN_VERSION baked into the image) and
//   x-standin-database: the first 12 hex digits of sha256(DATABASE_URL), never the secret itself; and
//   x-standin-client: the peer address of the connection (a gateway's, or the client's through DNAT).
// Test knobs: ?delay_ms=N on any path answers after N ms (at most 120000). READY_CHECKS (default
// "database,redis,rabbitmq") lists which dependencies /ready checks (empty: none). An image built with
// STANDIN_BROKEN_HEALTH=1 fails /health always (a bad release, for rollback tests). POST
// /_standin/health?state=fail (or ok) makes this one process fail (or pass) /health from then on; POST
// /_standin/slow?ms=N makes it answer every later request N ms late (a slow node; 0: on time again).
const http = require("http");
const net = require("net");
const { setting, fingerprint, identity } = require("./common");

const port = Number(process.env.PORT || 3000);
const shutdownDelayMs = Math.max(0, Number(process.env.SHUTDOWN_DELAY_SECONDS || 0) * 1000);
let brokenHealth = process.env.STANDIN_BROKEN_HEALTH === "1";
let slowMs = 0;
const urls = {
  database: setting("DATABASE_URL"),
  redis: setting("REDIS_URL"),
  rabbitmq: setting("RABBITMQ_URL"),
};
const readyChecks = (process.env.READY_CHECKS ?? "database,redis,rabbitmq")
  .split(",").map((s) => s.trim()).filter(Boolean);
const who = { ...identity(), database: fingerprint(urls.database) };
const headers = {
  "x-standin-pool": who.pool,
  "x-standin-task": who.task,
  "x-standin-version": who.version,
  "x-standin-database": who.database,
};

let draining = false;
let closing = false;
let inFlight = 0;

function reachable(url) {
  return new Promise((resolve) => {
    if (!url) return resolve(false);
    let target;
    try {
      target = new URL(url);
    } catch {
      return resolve(false);
    }
    const socket = net.connect({ host: target.hostname, port: Number(target.port), timeout: 2000 });
    socket.once("connect", () => { socket.destroy(); resolve(true); });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => { socket.destroy(); resolve(false); });
  });
}

async function handle(req, res) {
  const url = new URL(req.url, "http://stand-in");
  const reply = (status, body) => {
    const client = (req.socket.remoteAddress || "").replace(/^::ffff:/, "");
    const extra = closing ? { connection: "close" } : {};
    res.writeHead(status, { "content-type": "application/json", ...headers, "x-standin-client": client, ...extra });
    res.end(JSON.stringify({ ...body, ...who, client }));
  };
  const delay = Math.min(120000, Math.max(0, Number(url.searchParams.get("delay_ms")) || 0));
  if (delay) await new Promise((r) => setTimeout(r, delay));
  const path = url.pathname;
  if (path === "/_standin/slow" && req.method === "POST") {
    slowMs = Math.min(120000, Math.max(0, Number(url.searchParams.get("ms")) || 0));
    return reply(200, { slowMs });
  }
  if (slowMs) await new Promise((r) => setTimeout(r, slowMs));
  if (path === "/_standin/health" && req.method === "POST") {
    brokenHealth = url.searchParams.get("state") === "fail";
    return reply(200, { health: brokenHealth ? "failing" : "ok" });
  }
  if (path === "/health") return brokenHealth ? reply(500, { status: "broken" }) : reply(200, { status: "ok" });
  if (path === "/live") return reply(200, { status: "ok" });
  if (path === "/ready") {
    if (draining) return reply(503, { status: "draining" });
    const checks = {};
    for (const name of readyChecks) checks[name] = await reachable(urls[name]);
    const ready = Object.values(checks).every(Boolean);
    return reply(ready ? 200 : 503, { status: ready ? "ready" : "not ready", checks });
  }
  reply(200, { stub: "carecircle-api", method: req.method, url: req.url });
}

const server = http.createServer((req, res) => {
  inFlight += 1;
  res.once("close", () => { inFlight -= 1; });
  handle(req, res).catch((err) => {
    if (!res.headersSent) res.writeHead(500, headers);
    res.end(String(err));
  });
});
server.keepAliveTimeout = 5000;
server.listen(port, () => console.log(`stub api ${who.version} (pool ${who.pool}) listening on ${port}`));

function shutdown(signal) {
  if (draining) return;
  draining = true;
  console.log(`${signal}: serving ${shutdownDelayMs} ms more, then draining`);
  setTimeout(() => {
    closing = true;
    console.log(`no longer accepting; ${inFlight} request(s) in flight`);
    server.close(() => {
      console.log("all requests finished; exiting");
      process.exit(0);
    });
    server.closeIdleConnections();
  }, shutdownDelayMs);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
