// Preload (node --require) that forces every listening TCP server onto 127.0.0.1.
// @modelcontextprotocol/server-everything calls app.listen(PORT), which binds all interfaces;
// this project never exposes a server beyond loopback.
"use strict";
const net = require("net");
const LOOPBACK = "127.0.0.1";
const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    // listen(options[, cb]): a path (unix socket) is left alone.
    if (first.path === undefined) args[0] = { ...first, host: LOOPBACK };
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, cb])
    if (typeof args[1] === "string") args[1] = LOOPBACK;
    else args.splice(1, 0, LOOPBACK);
  } else if (first === undefined || typeof first === "function") {
    // listen([cb]): random port on all interfaces -> random port on loopback.
    args.unshift(0, LOOPBACK);
  }
  return origListen.apply(this, args);
};
