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
// - GET /metrics: the api's metric contract in Prometheus' text format: express-prom-bundle's
//   http_request_duration_seconds histogram (label status_code, its default buckets; every request but
//   /metrics itself) and prom-client's process_resident_memory_bytes.
// Test knobs: ?delay_ms=N on any path answers after N ms (at most 120000). READY_CHECKS (default
// "database,redis,rabbitmq") lists which dependencies /ready checks (empty: none). An image built with
// STANDIN_BROKEN_HEALTH=1 fails /health always (a bad release, for rollback tests). POST
// /_standin/health?state=fail (or ok) makes this one process fail (or pass) /health from then on.
// POST /_standin/errors?status=500 makes this one process answer every request but the health, metrics
// and knob paths with that status (an incident, for alerting tests); status=0 ends it.
// POST /_standin/slow?ms=N makes it answer every later request N ms late (a slow node; 0: on time again).
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

// express-prom-bundle's default buckets (seconds).
const BUCKETS = [0.003, 0.03, 0.1, 0.3, 1.5, 10];
const histogram = new Map(); // status code -> { counts per bucket, count, sum }
let failWith = 0;

function observe(status, seconds) {
  let series = histogram.get(status);
  if (!series) histogram.set(status, (series = { buckets: BUCKETS.map(() => 0), count: 0, sum: 0 }));
  BUCKETS.forEach((le, i) => { if (seconds <= le) series.buckets[i] += 1; });
  series.count += 1;
  series.sum += seconds;
}

function metrics() {
  const lines = [
    "# HELP http_request_duration_seconds duration histogram of http responses labeled with: status_code",
    "# TYPE http_request_duration_seconds histogram",
  ];
  for (const [status, series] of [...histogram.entries()].sort()) {
    BUCKETS.forEach((le, i) => lines.push(`http_request_duration_seconds_bucket{le="${le}",status_code="${status}"} ${series.buckets[i]}`));
    lines.push(`http_request_duration_seconds_bucket{le="+Inf",status_code="${status}"} ${series.count}`);
    lines.push(`http_request_duration_seconds_sum{status_code="${status}"} ${series.sum}`);
    lines.push(`http_request_duration_seconds_count{status_code="${status}"} ${series.count}`);
  }
  lines.push("# HELP process_resident_memory_bytes Resident memory size in bytes.", "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${process.memoryUsage().rss}`);
  return lines.join("\n") + "\n";
}

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
  if (path === "/_standin/errors" && req.method === "POST") {
    failWith = Number(url.searchParams.get("status")) || 0;
    return reply(200, { errors: failWith });
  }
  if (path === "/metrics") {
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    return res.end(metrics());
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
  if (failWith && !path.startsWith("/_standin/") && !["/live", "/ready"].includes(path)) {
    return reply(failWith, { stub: "carecircle-api", error: "injected" });
  }
  reply(200, { stub: "carecircle-api", method: req.method, url: req.url });
}

const server = http.createServer((req, res) => {
  inFlight += 1;
  const started = process.hrtime.bigint();
  res.once("close", () => { inFlight -= 1; });
  res.once("finish", () => {
    if (!req.url.startsWith("/metrics")) observe(res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
  });
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
