// The hub's HTTP API, with HTTP Basic auth from the MQTT login (the same account).
import { isObj } from "./dom.js";
import { app } from "./state.js";

export async function api(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: basicAuth() },
    body: JSON.stringify(body ?? {}),
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // a non-JSON error page: report its status below
  }
  if (!res.ok) throw new Error((isObj(json) && (json.error || json.message)) || `HTTP ${res.status}`);
  return json;
}

export function basicAuth(user = app.user, password = app.password) {
  return "Basic " + btoa(unescape(encodeURIComponent(`${user}:${password}`)));
}
