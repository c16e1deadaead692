// Shared by the stand-ins: the image contract's environment (plain settings from the dotenv file named by
// DOTENV_CONFIG_PATH, secrets from <NAME>_FILE), identity.
const crypto = require("crypto");
const fs = require("fs");

// Plain settings may come as a dotenv file (KEY='value' lines; what a swarm stack mounts, so that a
// service's env is one variable whose order cannot change). Loaded before anything reads the environment;
// a variable already set wins, as dotenv's own loader does. An unreadable file stops the process.
function loadDotenv(path) {
  let text;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (err) {
    console.error(`cannot read DOTENV_CONFIG_PATH (${path}): ${err.code || err.message}`);
    process.exit(1);
  }
  for (const line of text.split(/\r?\n/)) {
    const match = line.match(/^([A-Za-z_][A-Za-z0-9_]*)=(?:'([^']*)'|(.*))$/);
    if (match && process.env[match[1]] === undefined) process.env[match[1]] = match[2] ?? match[3];
  }
}
if (process.env.DOTENV_CONFIG_PATH) loadDotenv(process.env.DOTENV_CONFIG_PATH);

// A setting that may be a secret: <NAME>_FILE (a file, e.g. a Docker secret under /run/secrets) wins
// over <NAME>. A named file that cannot be read stops the process: a task must not start half-configured.
function setting(name) {
  const file = process.env[`${name}_FILE`];
  if (file) {
    try {
      return fs.readFileSync(file, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      console.error(`cannot read ${name}_FILE (${file}): ${err.code || err.message}`);
      process.exit(1);
    }
  }
  return process.env[name];
}

// The first 12 hex digits of a value's sha256: lets a test see which secret a task holds, never the secret.
function fingerprint(value) {
  if (value === undefined || value === "") return "unset";
  return crypto.createHash("sha256").update(value).digest("hex").slice(0, 12);
}

// The pool is the OTEL_RESOURCE_ATTRIBUTES entry carecircle.pool=<color>, if there is one.
function pool() {
  for (const entry of (process.env.OTEL_RESOURCE_ATTRIBUTES || "").split(",")) {
    const [key, ...rest] = entry.split("=");
    if (key.trim() === "carecircle.pool") return decodeURIComponent(rest.join("=").trim());
  }
  return "none";
}

function identity() {
  return {
    pool: pool(),
    task: process.env.HOSTNAME || require("os").hostname(),
    version: process.env.STANDIN_VERSION || "dev",
  };
}

module.exports = { setting, fingerprint, pool, identity };
