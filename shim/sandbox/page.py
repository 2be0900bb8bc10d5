"""The status page at ``/``: the sandboxes, their age and memory, refreshed every two seconds.

A static page (no data in it, so it needs no token to load): its script reads
the token from the address's fragment (``/#token=...``, never sent to the
server) or asks for it, keeps it in the tab's sessionStorage, and calls
``GET /v1/sandboxes`` and ``/healthz`` with it. Values are inserted as text,
never as HTML, so a sandbox's metadata cannot script the page.
"""
from __future__ import annotations

__all__ = ["STATUS_PAGE"]

STATUS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>kiln serve</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; min-width: 40em; }
th, td { text-align: left; padding: .25em .8em; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
#status { color: #666; margin: .5em 0 1em; }
.error { color: #a00; }
</style></head>
<body>
<h1>kiln serve</h1>
<div id="status">loading…</div>
<form id="login" hidden><label>Token <input id="token" type="password" size="40"></label>
<button>Show sandboxes</button></form>
<table id="sandboxes" hidden>
<thead><tr><th>Sandbox</th><th>Image</th><th class="num">Age</th><th class="num">Memory</th>
<th class="num">Expires in</th><th>Owner</th><th>Metadata</th></tr></thead>
<tbody></tbody></table>
<script>
"use strict";
const KEY = "kiln-serve-token";
function tokenFromHash() {
  const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (m) { sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
           history.replaceState(null, "", location.pathname); }
  return sessionStorage.getItem(KEY);
}
function age(s) {
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function mib(b) { return b == null ? "–" : (b / 1048576).toFixed(1) + " MiB"; }
function cell(row, text, cls) {
  const td = document.createElement("td"); td.textContent = text;
  if (cls) td.className = cls; row.appendChild(td);
}
async function refresh() {
  const token = tokenFromHash();
  const status = document.getElementById("status");
  if (!token) { document.getElementById("login").hidden = false;   // a refusal stays shown
                if (status.className !== "error") status.textContent = "a token is needed";
                return; }
  try {
    const [list, health] = await Promise.all([
      fetch("/v1/sandboxes", {headers: {"Authorization": "Bearer " + token}}),
      fetch("/healthz")]);
    if (list.status === 401) { sessionStorage.removeItem(KEY);
      document.getElementById("login").hidden = false;
      status.textContent = "the token was refused"; status.className = "error"; return; }
    const data = await list.json(); const h = await health.json();
    const body = document.querySelector("#sandboxes tbody");
    body.replaceChildren();
    let total = 0;
    for (const s of data.sandboxes) {
      const row = document.createElement("tr"); row.dataset.id = s.id;
      cell(row, s.id); cell(row, s.image); cell(row, age(s.age_s), "num");
      cell(row, mib(s.memory_used_bytes), "num"); cell(row, age(s.expires_in_s), "num");
      cell(row, s.owner || ""); cell(row, JSON.stringify(s.metadata));
      body.appendChild(row); total += s.memory_used_bytes || 0;
    }
    document.getElementById("sandboxes").hidden = false;
    document.getElementById("login").hidden = true;
    status.className = "";
    status.textContent = data.sandboxes.length + " sandboxes, " + mib(total) +
      " in all; server " + h.status + (h.refusing_new ? ", refusing new sandboxes" : "");
    document.body.dataset.loaded = "yes";
  } catch (e) { status.textContent = "cannot reach the server: " + e; status.className = "error"; }
}
document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("token").value); refresh(); });
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
"""
