// dce.js — the browser client of Dce for Go: one WebSocket speaking
// PATH[:ID];JSON, requests matched to replies by id, pushes by path,
// reconnection with backoff and jitter. An ES module, no build step:
//
//   import {DceClient} from "/static/dce.js";
//   const dce = new DceClient();                     // this page's host and port
//   dce.on("setMessageList", list => show(list));    // pushes, by path
//   dce.onOpen = () => dce.request("sample/im/login", {nickname: "Ada"})
//     .then(reply => console.log("I am", reply.data.id))
//     .catch(err => console.log(err.code, err.message));  // 400, or 0 for timeout/closed
//   dce.connect();                                   // and again after every drop
//   dce.send("sample/im/send", {message: "hi"});     // no reply wanted
//   dce.close();                                     // for good: no more reconnects

/** A failed request: code is the server's (400, 401, 429, 503…), or 0 when
 *  no reply came (timeout, connection closed). */
export class DceError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "DceError";
    this.code = code;
  }
}

/**
 * Localize the page: the language is Chinese when the browser prefers it,
 * else English; every [data-i18n] element gets its text and every
 * [data-i18n-placeholder] its placeholder from table ({en: {...}, zh: {...}}).
 * Returns t(key, vars), which fills {name} from vars.
 */
export function localize(table) {
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  const lang = /^zh\b/i.test(langs[0]) ? "zh" : "en";
  const t = (k, vars = {}) => (table[lang][k] || table.en[k]).replace(/\{(\w+)\}/g, (_, v) => vars[v]);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach(el => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach(el => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  return t;
}

/** The WebSocket URL of this page's own host and port. */
export function pageURL(path = "/") {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

/** Encode one message: PATH[:ID];JSON. */
export function encode(path, id, data) {
  return path + (id ? ":" + id : "") + ";" + (data === undefined ? "" : JSON.stringify(data));
}

/** Decode one frame into {path, id (null for a push), data}; the payload is
 *  JSON when it parses, else the text itself. */
export function decode(text) {
  const semi = text.indexOf(";");
  let head = semi < 0 ? text : text.slice(0, semi);
  const body = semi < 0 ? "" : text.slice(semi + 1);
  let id = null;
  const colon = head.indexOf(":");
  if (colon >= 0) {
    id = Number(head.slice(colon + 1));
    head = head.slice(0, colon);
  }
  let data = body;
  try { data = JSON.parse(body); } catch (e) { /* a text payload */ }
  return {path: head, id, data};
}

export class DceClient {
  /**
   * @param {object} [options]
   * @param {string} [options.url]      ws:// or wss:// URL; default: this page's host and port
   * @param {number} [options.timeout]  ms a request waits for its reply (10 s)
   * @param {number} [options.minDelay] first reconnect delay in ms (1 s), doubled per failure
   * @param {number} [options.maxDelay] longest reconnect delay in ms (30 s)
   */
  constructor({url = pageURL(), timeout = 10000, minDelay = 1000, maxDelay = 30000} = {}) {
    Object.assign(this, {url, timeout, minDelay, maxDelay});
    /** Called after every (re)connect: log in again and resync here. */
    this.onOpen = null;
    /** Called when the connection drops, with the delay (ms) before the next try, or null when closed for good. */
    this.onClose = null;
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();   // id → {resolve, reject, timer}
    this._handlers = new Map();  // path → Set of handlers
    this._failures = 0;
    this._retry = null;
    this._wanted = false;
  }

  /** True while the socket is open. */
  get connected() { return !!this._ws && this._ws.readyState === WebSocket.OPEN; }

  /** Open the connection; it reopens by itself after a drop until close(). */
  connect() {
    this._wanted = true;
    clearTimeout(this._retry);
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) return;
    const ws = new WebSocket(this.url);
    this._ws = ws;
    ws.onopen = () => {
      this._failures = 0;
      if (this.onOpen) this.onOpen();
    };
    ws.onmessage = ev => this._receive(ev.data);
    ws.onclose = () => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._failAll("connection closed");
      let delay = null;
      if (this._wanted) {
        // Full backoff with jitter: 1, 2, 4 … 30 s, each ±25 %, so that a
        // restarted server is not met by every page at the same instant.
        delay = Math.min(this.maxDelay, this.minDelay * 2 ** this._failures) * (0.75 + Math.random() / 2);
        this._failures++;
        this._retry = setTimeout(() => this.connect(), delay);
      }
      if (this.onClose) this.onClose(delay);
    };
  }

  /** Close for good: no reconnect; pending requests fail with code 0. */
  close() {
    this._wanted = false;
    clearTimeout(this._retry);
    if (this._ws) this._ws.close();
  }

  /** Subscribe to pushes of a path; returns the function that unsubscribes. */
  on(path, handler) {
    if (!this._handlers.has(path)) this._handlers.set(path, new Set());
    this._handlers.get(path).add(handler);
    return () => this._handlers.get(path).delete(handler);
  }

  /** Send without asking for a reply (the server answers nothing). */
  send(path, data) {
    if (!this.connected) return false;
    this._ws.send(encode(path, 0, data));
    return true;
  }

  /**
   * Send with a request id; resolves with the reply's status data
   * ({data: …} or {}), rejects with a DceError for a failure status
   * ({status: false, code, message}), a timeout or a closed connection.
   */
  request(path, data, {timeout = this.timeout} = {}) {
    if (!this.connected) return Promise.reject(new DceError(0, "not connected"));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new DceError(0, "no reply within " + timeout + " ms"));
      }, timeout);
      this._pending.set(id, {resolve, reject, timer});
      this._ws.send(encode(path, id, data));
    });
  }

  _receive(text) {
    const {path, id, data} = decode(text);
    if (id !== null) {
      const p = this._pending.get(id);
      if (!p) return;
      this._pending.delete(id);
      clearTimeout(p.timer);
      if (data && data.status === false) p.reject(new DceError(data.code || 500, data.message || "failed"));
      else p.resolve(data);
      return;
    }
    const hs = this._handlers.get(path);
    if (hs) hs.forEach(h => h(data, path));
  }

  _failAll(why) {
    this._pending.forEach(p => { clearTimeout(p.timer); p.reject(new DceError(0, why)); });
    this._pending.clear();
  }
}
