// Dev stand-in for the CareCircle BullMQ workers: touches the heartbeat file the healthcheck reads.
const fs = require("fs");

const heartbeat = process.env.WORKER_HEARTBEAT_FILE || "/tmp/worker-heartbeat";
const beat = () => fs.writeFileSync(heartbeat, String(Date.now()));
beat();
const timer = setInterval(beat, 5000);
console.log("stub worker running");
process.on("SIGTERM", () => { clearInterval(timer); process.exit(0); });
