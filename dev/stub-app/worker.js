// Stand-in for the CareCircle BullMQ workers (dev stack and swarm tests).
// - Touches WORKER_HEARTBEAT_FILE (default /tmp/worker-heartbeat) every 5 s and after every job: the
//   healthcheck reads it.
// - Takes simulated jobs from the queue stand-in (queue.js), found at the host and port of REDIS_URL
//   (or REDIS_URL_FILE), leases them and acknowledges each when done. Without such a queue (dev: a
//   real Redis, or nothing reachable) it only heartbeats; when nothing answers it looks again now and
//   then (backing off to once a minute).
// - SIGTERM: stops taking jobs, finishes the job in hand (and acks it), exits 0.
const fs = require("fs");
const http = require("http");
const net = require("net");
const { setting, identity } = require("./common");

const heartbeat = process.env.WORKER_HEARTBEAT_FILE || "/tmp/worker-heartbeat";
const who = identity();
const queue = queueAddress(setting("REDIS_URL"));
let stopping = false;
let current = null; // the job in hand
let pendingLease = null; // the outstanding lease request, aborted on SIGTERM

function queueAddress(url) {
  if (!url) return null;
  try {
    const u = new URL(url);
    return { host: u.hostname, port: Number(u.port || 6379) };
  } catch {
    return null;
  }
}

const beat = () => fs.writeFileSync(heartbeat, String(Date.now()));
beat();
const timer = setInterval(beat, 5000);
console.log(`stub worker ${who.version} (pool ${who.pool}) running`);

// One HTTP request to the queue; resolves { status, body } or rejects.
function call(method, path, { timeoutMs = 5000, track = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: queue.host, port: queue.port, method, path, timeout: timeoutMs }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { data += d; });
      res.on("end", () => {
        let body = null;
        try { body = data ? JSON.parse(data) : null; } catch { /* not the queue */ }
        resolve({ status: res.statusCode, body });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    if (track) pendingLease = req;
    req.end();
  });
}

// Sleeps that SIGTERM cuts short.
const sleepers = new Set();
const sleep = (ms) => new Promise((r) => {
  const done = () => { clearTimeout(t); sleepers.delete(done); r(); };
  const t = setTimeout(done, ms);
  sleepers.add(done);
});
const q = (params) => new URLSearchParams({ worker: who.task, pool: who.pool, version: who.version, ...params });

// What listens at REDIS_URL: "redis" (a real one answers PING with +PONG or an error such as NOAUTH),
// "queue" (the stand-in: an HTTP server answers the PING line with "HTTP/1.1 400"), or "none". PING
// first, so a real Redis never sees an HTTP request (it logs those as a possible attack).
function detect() {
  return new Promise((resolve) => {
    const socket = net.connect({ host: queue.host, port: queue.port, timeout: 2000 });
    let data = "";
    const done = (kind) => { socket.destroy(); resolve(kind); };
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => {
      data += d;
      if (/^[+-]/.test(data)) done("redis");
      else if (data.startsWith("HTTP/")) done("queue");
    });
    socket.once("end", () => done(data.startsWith("HTTP/") ? "queue" : "none"));
    socket.once("error", () => done("none"));
    socket.once("timeout", () => done("none"));
  });
}

async function isQueue() {
  const kind = await detect();
  if (kind === "redis") return "redis";
  if (kind !== "queue") return false;
  try {
    const { status, body } = await call("GET", "/hello", { timeoutMs: 2000 });
    return status === 200 && body && body.service === "carecircle-standin-queue";
  } catch {
    return false;
  }
}

async function run() {
  if (!queue) return; // heartbeat only
  let probeDelay = 1000;
  let state = null;
  const say = (next, text) => { if (state !== next) console.log(text); state = next; };
  while (!stopping) {
    const found = await isQueue();
    if (found === "redis") {
      console.log("REDIS_URL is a real Redis, not the queue stand-in: heartbeat only");
      return;
    }
    if (!found) {
      say("none", "no queue stand-in at REDIS_URL; heartbeat only, looking again later");
      await sleep(probeDelay);
      probeDelay = Math.min(probeDelay * 2, 60000);
      continue;
    }
    say("queue", `taking jobs from ${queue.host}:${queue.port}`);
    probeDelay = 1000;
    try {
      await work();
    } catch (err) {
      if (!stopping) { console.log(`queue error: ${err.message}`); await sleep(500); }
    }
  }
}

async function work() {
  while (!stopping) {
    const lease = await call("POST", `/lease?${q({ wait_ms: 2000 })}`, { timeoutMs: 7000, track: true });
    pendingLease = null;
    if (lease.status === 204) continue;
    if (lease.status !== 200 || !lease.body) throw new Error(`lease answered ${lease.status}`);
    current = lease.body;
    // A job leased while SIGTERM arrived is still done: the queue handed it to us.
    await sleep(Number(current.ms) || 0);
    const ack = await call("POST", `/ack?${q({ id: current.id })}`);
    if (ack.status !== 200) console.log(`ack of job ${current.id} answered ${ack.status}`);
    current = null;
    beat();
  }
}

let finished = run();

process.on("SIGTERM", async () => {
  if (stopping) return;
  stopping = true;
  console.log(current ? `SIGTERM: finishing job ${current.id}, taking no more` : "SIGTERM: taking no more jobs");
  if (pendingLease && !current) pendingLease.destroy(new Error("stopping"));
  for (const wake of [...sleepers]) if (!current) wake();
  await finished.catch(() => {});
  clearInterval(timer);
  console.log("stopped");
  process.exit(0);
});
