// One socket.io-client v4 connection, exactly as a seed client opens it: io(URL + "/realtime", options).
// argv[2]: JSON {url, auth?, query?, transports?} (no transports: the library's default, polling then
// websocket). Reads JSON lines on stdin: {"emit": name, "data": {...}, "ack": true} or {"close": true}.
// Prints one JSON line per thing that happens: {"event": name, "data": ...}, {"ack": name, "data": ...},
// {"event": "connect_error", "message", "data"}, {"event": "disconnect", "reason"}, {"open": transport},
// {"upgrade": transport}.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const config = JSON.parse(process.argv[2]);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const options = { auth: config.auth, query: config.query, reconnection: false };
if (config.transports) options.transports = config.transports;
const socket = io(config.url + "/realtime", options);

socket.on("connect", () => print({ event: "connect", transport: socket.io.engine.transport.name }));
socket.io.on("open", () => print({ open: socket.io.engine.transport.name })); // the first transport
socket.io.engine.on("upgrade", (transport) => print({ upgrade: transport.name }));
socket.on("connect_error", (err) => print({ event: "connect_error", message: err.message, data: err.data ?? null }));
socket.on("disconnect", (reason) => {
  print({ event: "disconnect", reason });
  process.exit(0);
});
socket.onAny((event, data) => print({ event, data: data ?? null }));

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.close) {
    socket.disconnect();
  } else {
    const args = "data" in command ? [command.data] : []; // the seed sends no payload for some events
    if (command.ack) args.push((data) => print({ ack: command.emit, data }));
    socket.emit(command.emit, ...args);
  }
}).on("close", () => {
  socket.disconnect();
  process.exit(0);
});
