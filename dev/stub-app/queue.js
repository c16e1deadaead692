// Stand-in for the job queue (Redis/BullMQ) in swarm tests: a tiny HTTP service on PORT (default 6379,
// the port of REDIS_URL that the workers stand-in talks to). Jobs are leased: a job leased and not
// acknowledged within LEASE_SECONDS (default 10) goes back to the queue.
//   GET  /hello                      -> {"service": "carecircle-standin-queue"} (the workers look for it)
//   GET  /health                     -> 200
//   POST /enqueue?count=N&ms=M       -> {"ids": [...]}: N jobs (default 1) that take M ms each (default 200)
//   POST /lease?worker=W&pool=P&wait_ms=T -> 200 {"id", "ms", "attempt"}, or 204 after T ms (max 10000)
//   POST /ack?id=I&worker=W&pool=P   -> 200 {"duplicate": bool}; 404 for an unknown id
//   GET  /stats                      -> counters: enqueued, acked, inFlight, pending, redelivered,
//                                       expired, duplicateAcks, perWorker {W: acks}, perPool {P: acks},
//                                       leases [{id, worker, ageMs}]
//   POST /reset                      -> forgets every job and counter
const http = require("http");
const { identity } = require("./common");

const port = Number(process.env.PORT || 6379);
const leaseMs = Number(process.env.LEASE_SECONDS || 10) * 1000;

let state;
function reset() {
  state = {
    nextId: 1,
    pending: [], // job ids, oldest first
    jobs: new Map(), // id -> { id, ms, attempt, worker, leasedAt, acked }
    waiters: [], // lease requests waiting for a job: { res, worker, pool, timer }
    counters: { enqueued: 0, acked: 0, redelivered: 0, expired: 0, duplicateAcks: 0 },
    perWorker: {},
    perPool: {},
  };
}
reset();

function send(res, status, body) {
  if (res.writableEnded || res.destroyed) return false;
  res.writeHead(status, { "content-type": "application/json" });
  res.end(body === undefined ? "" : JSON.stringify(body));
  return true;
}

function lease(job, worker) {
  job.attempt += 1;
  if (job.attempt > 1) state.counters.redelivered += 1;
  job.worker = worker;
  job.leasedAt = Date.now();
  return { id: job.id, ms: job.ms, attempt: job.attempt };
}

// Hand pending jobs to waiting lease requests.
function dispatch() {
  while (state.pending.length && state.waiters.length) {
    const waiter = state.waiters.shift();
    clearTimeout(waiter.timer);
    if (waiter.res.destroyed) continue;
    const job = state.jobs.get(state.pending.shift());
    send(waiter.res, 200, lease(job, waiter.worker));
  }
}

// Leases not acknowledged in time go back to the front of the queue.
setInterval(() => {
  const now = Date.now();
  for (const job of state.jobs.values()) {
    if (!job.acked && job.leasedAt && now - job.leasedAt > leaseMs) {
      job.leasedAt = null;
      job.worker = null;
      state.counters.expired += 1;
      state.pending.unshift(job.id);
    }
  }
  dispatch();
}, 250);

function stats() {
  const now = Date.now();
  const leases = [...state.jobs.values()].filter((j) => !j.acked && j.leasedAt)
    .map((j) => ({ id: j.id, worker: j.worker, ageMs: now - j.leasedAt }));
  return {
    ...state.counters,
    inFlight: leases.length,
    pending: state.pending.length,
    perWorker: state.perWorker,
    perPool: state.perPool,
    leases,
  };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://queue");
  const p = url.searchParams;
  const route = `${req.method} ${url.pathname}`;
  if (route === "GET /hello") return send(res, 200, { service: "carecircle-standin-queue", ...identity() });
  if (route === "GET /health") return send(res, 200, { status: "ok" });
  if (route === "GET /stats") return send(res, 200, stats());
  if (route === "POST /reset") { reset(); return send(res, 200, stats()); }
  if (route === "POST /enqueue") {
    const count = Math.max(1, Math.min(100000, Number(p.get("count")) || 1));
    const ms = Math.max(0, Number(p.get("ms") ?? 200) || 0);
    const ids = [];
    for (let i = 0; i < count; i += 1) {
      const id = state.nextId++;
      state.jobs.set(id, { id, ms, attempt: 0, worker: null, leasedAt: null, acked: false });
      state.pending.push(id);
      ids.push(id);
    }
    state.counters.enqueued += count;
    dispatch();
    return send(res, 200, { ids });
  }
  if (route === "POST /lease") {
    const worker = p.get("worker") || "unknown";
    if (state.pending.length) return send(res, 200, lease(state.jobs.get(state.pending.shift()), worker));
    const waitMs = Math.max(0, Math.min(10000, Number(p.get("wait_ms")) || 0));
    if (!waitMs) return send(res, 204);
    const waiter = { res, worker, timer: null };
    waiter.timer = setTimeout(() => {
      state.waiters = state.waiters.filter((w) => w !== waiter);
      send(res, 204);
    }, waitMs);
    res.once("close", () => {
      clearTimeout(waiter.timer);
      state.waiters = state.waiters.filter((w) => w !== waiter);
    });
    state.waiters.push(waiter);
    return undefined;
  }
  if (route === "POST /ack") {
    const job = state.jobs.get(Number(p.get("id")));
    if (!job) return send(res, 404, { error: "unknown job" });
    if (job.acked) {
      state.counters.duplicateAcks += 1;
      return send(res, 200, { duplicate: true });
    }
    job.acked = true;
    job.leasedAt = null;
    state.pending = state.pending.filter((id) => id !== job.id); // acked late, after it was re-queued
    state.counters.acked += 1;
    const worker = p.get("worker") || "unknown";
    const pool = p.get("pool") || "none";
    state.perWorker[worker] = (state.perWorker[worker] || 0) + 1;
    state.perPool[pool] = (state.perPool[pool] || 0) + 1;
    return send(res, 200, { duplicate: false });
  }
  return send(res, 404, { error: `no route ${route}` });
});
server.keepAliveTimeout = 5000;
server.listen(port, () => console.log(`queue stand-in listening on ${port}, leases of ${leaseMs} ms`));
process.on("SIGTERM", () => { server.close(); server.closeAllConnections(); process.exit(0); });
