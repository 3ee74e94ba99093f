// Login and the MQTT connection (the hub API uses the same account: api.js).
import mqtt from "../vendor/mqtt.esm.js";
import { Topics } from "../generated/protocol.js";
import { $, isStr, randomId } from "./dom.js";
import { SESSION_KEY, app, stats } from "./state.js";
import { markAll } from "./render.js";
import { onMessage } from "./messages.js";
import { showBanner } from "./notice.js";
import { loadActivity } from "./activity.js";
import { followFleet, openFleetStream } from "./host-stream.js";
import { basicAuth } from "./api.js";

export function defaultWsUrl() {
  const u = new URL("mqtt", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

export function explainConnectError(err, url) {
  const code = err?.code;
  const msg = String(err?.message ?? err);
  if (code === 4 || code === 5 || /not authori[sz]ed|bad user ?name or password/i.test(msg)) return "Wrong username or password.";
  return `Cannot reach the fleet's MQTT broker at ${url}: ${msg}`;
}

export function connectMqtt(url, username, password) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      username,
      password,
      clientId: `lockstep-page-${randomId()}${randomId()}`,
      protocolVersion: 4,
      clean: true,
      connectTimeout: 10_000,
      reconnectPeriod: 0, // first attempt only; reconnects are switched on once it worked
    });
    const fail = (err) => {
      client.removeAllListeners("connect");
      client.end(true);
      reject(new Error(explainConnectError(err, url)));
    };
    client.once("connect", () => {
      client.removeListener("error", fail);
      client.removeListener("close", onClose);
      resolve(client);
    });
    client.once("error", fail);
    const onClose = () => fail(new Error("the connection was closed"));
    client.once("close", onClose);
  });
}

export async function whoami(username, password) {
  try {
    const res = await fetch("api/whoami", { headers: { authorization: basicAuth(username, password) } });
    if (!res.ok) return { role: "viewer", note: `role unknown (whoami: HTTP ${res.status}); actions hidden` };
    const body = await res.json();
    return { role: body?.role === "operator" ? "operator" : "viewer", user: isStr(body?.user) ? body.user : username };
  } catch (err) {
    return { role: "viewer", note: `role unknown (${err.message}); actions hidden` };
  }
}

export async function login(username, password) {
  const cfgRes = await fetch("config.json");
  if (!cfgRes.ok) throw new Error(`the page configuration could not be loaded (HTTP ${cfgRes.status})`);
  app.config = await cfgRes.json();
  app.topics = new Topics(app.config.prefix);
  const url = app.config.mqttWsUrl || defaultWsUrl();
  const client = await connectMqtt(url, username, password);
  // The broker took the password: the fleet's snapshot is asked for now, alongside whoami.
  const fleetStream = openFleetStream(basicAuth(username, password));
  fleetStream.catch(() => undefined); // followFleet sees the failure and tries again
  const who = await whoami(username, password);
  app.client = client;
  app.user = who.user ?? username;
  app.password = password;
  app.role = who.role;
  client.options.reconnectPeriod = 3000;
  client.on("message", (topic, payload) => {
    const t0 = performance.now();
    onMessage(topic, payload);
    stats.handleMs += performance.now() - t0;
  });
  client.on("connect", () => setConn(true));
  client.on("close", () => setConn(false));
  client.on("error", (err) => console.warn("lockstep: mqtt error", err.message));
  const t = app.topics;
  // The summary first: brokers send retained messages in the order of the filters. Host state
  // comes from the hub's fleet stream (host-stream.js), not from the per-host retained topics.
  client.subscribe([t.fleetSummary(), t.expected(), t.allRollouts(), t.allHistory(), t.allJobs(), t.allPreviews(), t.allPreviewSummaries(), t.hubAvailability(), t.hubStatus(), t.events(), t.automatic(), t.automaticPause(), t.hubStorage()], { qos: 0 });
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ username, password }));
  document.body.dataset.role = app.role;
  $("session-user").textContent = `${app.user} · ${app.role}`;
  $("session").hidden = false;
  $("login-view").hidden = true;
  $("fleet-view").hidden = false;
  for (const b of document.querySelectorAll(".operator-only")) b.hidden = app.role !== "operator";
  setConn(true);
  if (who.note) showBanner(who.note);
  markAll();
  void loadActivity();
  void followFleet(fleetStream);
}

export function setConn(online) {
  const c = $("conn-state");
  c.dataset.state = online ? "online" : "offline";
  c.textContent = online ? "live" : "reconnecting…";
}

export function logout() {
  sessionStorage.removeItem(SESSION_KEY);
  app.client?.end(true);
  location.reload();
}
