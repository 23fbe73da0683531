// The API client: the envelope, the key (sessionStorage, or localStorage when remembered),
// and the live stream read with fetch, because EventSource cannot send an Authorization
// header and the API refuses keys in URLs.

const STORE_KEY = "burrow.apiKey";
const BASE = "/api/v1";

export const auth = {
  get key() {
    return sessionStorage.getItem(STORE_KEY) || localStorage.getItem(STORE_KEY) || "";
  },
  set(key, remember) {
    this.clear();
    (remember ? localStorage : sessionStorage).setItem(STORE_KEY, key);
  },
  clear() {
    sessionStorage.removeItem(STORE_KEY);
    localStorage.removeItem(STORE_KEY);
  },
  required: false, // set once the API answered 401
};

export class ApiError extends Error {
  constructor(status, type, message, details) {
    super(message);
    this.status = status;
    this.type = type;
    this.details = details;
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (auth.key) out.Authorization = `Bearer ${auth.key}`;
  return out;
}

const listeners = new Set();
/** Called with an ApiError whenever the API answers 401. */
export function onUnauthorized(fn) { listeners.add(fn); }

/** Call the API; returns the envelope's data or throws ApiError. */
export async function call(method, path, body) {
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (exc) {
    throw new ApiError(0, "network", `The API did not answer (${exc.message}).`);
  }
  let envelope = null;
  try { envelope = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const err = envelope?.error || {};
    const error = new ApiError(response.status, err.type || "http_error",
      envelope?.message || `HTTP ${response.status}`, err.details);
    if (response.status === 401) {
      auth.required = true;
      listeners.forEach((fn) => fn(error));
    }
    throw error;
  }
  return envelope ? envelope.data : null;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const del = (path) => call("DELETE", path);

/**
 * Follow /api/v1/events/stream: handlers[event](data) for each event, onState("live" |
 * "reconnecting" | "unauthorized"). Reconnects with a growing delay (up to 10 s); returns
 * a function that stops it.
 */
export function openStream(handlers, onState) {
  let stopped = false;
  let controller = null;
  let delay = 1000;

  async function once() {
    controller = new AbortController();
    const response = await fetch(`${BASE}/events/stream`, {
      headers: headers({ Accept: "text/event-stream" }),
      signal: controller.signal,
      cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) {
      onState("unauthorized");
      if (response.status === 401) {
        auth.required = true;
        listeners.forEach((fn) => fn(new ApiError(401, "unauthorized", "API key required")));
      }
      return false;
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    onState("live");
    delay = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  function dispatch(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue; // comment: keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length || !handlers[event]) return;
    try { handlers[event](JSON.parse(data.join("\n"))); } catch (exc) { console.error("stream event", event, exc); }
  }

  (async () => {
    while (!stopped) {
      let keepGoing = true;
      try {
        keepGoing = await once();
      } catch (exc) {
        if (stopped) return;
      }
      if (stopped) return;
      if (keepGoing === false) return; // unauthorized: restarted once a key is entered
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();

  return () => { stopped = true; controller?.abort(); };
}
