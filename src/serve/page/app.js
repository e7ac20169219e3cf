// The docstream page: every call goes through the public API, with the
// token (if the server asks for one) kept in this browser only. Text from
// documents is always set as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let token = localStorage.getItem("docstream-token") || "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("This server needs a token: paste yours at the top.");
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    throw new Error((body.error || response.statusText) + (body.hint ? " — " + body.hint : ""));
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

function badge(text, kind) {
  return el("span", { class: "badge " + (kind || text || "").toLowerCase() }, text);
}

function when(value) {
  if (!value) return "";
  const d = new Date(value);
  return isNaN(d) ? value : d.toLocaleString();
}

// Jobs: uploads of this page, followed step by step until they land.
const jobs = new Map();

function renderJob(job) {
  const stages = Object.values(job.stages || {});
  const done = stages.filter((s) => s.state === "done").length;
  const pct = stages.length ? Math.round((100 * done) / stages.length) : 0;
  const bar = el("div", { class: "progress", role: "progressbar", "aria-valuenow": String(pct), "aria-valuemin": "0", "aria-valuemax": "100" });
  const fill = el("span");
  fill.style.width = pct + "%"; // CSSOM, which the page's CSP allows
  bar.append(fill);
  const title = job.state === "landed"
    ? el("a", { href: "#doc-" + job.doc_id, onclick: (e) => { e.preventDefault(); openDoc(job.doc_id); } }, job.name || job.doc_id)
    : el("span", {}, job.name || job.doc_id);
  const failures = (job.failures || []).length;
  const calling = Object.entries(job.stages || {}).find(([, s]) => s.state === "running" && s.calls_planned);
  const note = job.error ? job.error
    : failures ? failures + " stage failure(s)"
    : calling ? calling[0] + " " + calling[1].calls_done + "/" + calling[1].calls_planned
    : done + "/" + stages.length + " steps";
  return el("li", { id: "job-" + job.job_id, "data-state": job.state },
    el("div", { class: "item" }, title, badge(job.state)),
    el("div", { class: "meta" }, note),
    job.state === "landed" || job.state === "failed" ? null : bar);
}

function showJob(job) {
  jobs.set(job.job_id, job);
  const node = renderJob(job);
  const old = $("job-" + job.job_id);
  if (old) old.replaceWith(node); else $("jobs").prepend(node);
}

async function follow(jobId) {
  try {
    const response = await api("/v1/jobs/" + jobId + "/events", { headers: { Accept: "text/event-stream" } });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (!data) continue;
        const event = JSON.parse(data);
        showJob(event.job);
        if (event.job.state === "landed") loadDocs();
      }
    }
  } catch (e) {
    showError(e);
  }
}

function showError(e) {
  const p = $("upload-error");
  p.textContent = e.message || String(e);
  p.hidden = false;
}

async function upload(files) {
  $("upload-error").hidden = true;
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const accepted = await json("/v1/documents", { method: "POST", body: form });
      showJob({ job_id: accepted.job_id, doc_id: accepted.doc_id, name: file.name, state: accepted.state, stages: {} });
      follow(accepted.job_id);
    } catch (e) {
      showError(e);
    }
  }
}

// Documents.
async function loadDocs() {
  const q = $("filter").value.trim();
  try {
    const page = await json("/v1/documents?limit=50" + (q ? "&q=" + encodeURIComponent(q) : ""));
    const list = $("docs");
    list.replaceChildren(...page.documents.map((d) => el("li", { "data-doc-id": d.doc_id },
      el("div", { class: "item" },
        el("a", { href: "#doc-" + d.doc_id, onclick: (e) => { e.preventDefault(); openDoc(d.doc_id); } }, d.title || d.source_uri),
        d.doc_type ? badge(d.doc_type, "type") : null),
      el("div", { class: "meta" }, [d.mime, when(d.ingested_at)].filter(Boolean).join(" · ")))));
    $("docs-empty").hidden = page.documents.length > 0;
    // A landed upload is in the list now: its progress line has done its job.
    const listed = new Set(page.documents.map((d) => d.doc_id));
    for (const [id, job] of jobs) {
      if (job.state === "landed" && listed.has(job.doc_id)) {
        jobs.delete(id);
        const node = $("job-" + id);
        if (node) node.remove();
      }
    }
  } catch (e) {
    showError(e);
  }
}

function table(rows, columns) {
  const head = el("tr", {}, ...columns.map(([, label]) => el("th", {}, label)));
  const body = rows.map((r) => el("tr", {}, ...columns.map(([key]) => {
    const v = r[key];
    if (key === "severity" || key === "priority") return el("td", {}, v ? badge(v) : "");
    return el("td", {}, Array.isArray(v) ? v.join(", ") : v == null ? "" : v);
  })));
  return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...body)));
}

async function openDoc(docId, chunk) {
  const section = $("doc");
  const body = $("doc-body");
  section.hidden = false;
  body.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  try {
    const v = await json("/v1/documents/" + docId);
    const d = v.document;
    $("doc-title").textContent = d.title || d.source_uri;
    const parts = [
      el("p", { class: "meta" }, [v.doc_type && v.doc_type.doc_type, d.mime, (d.n_chars || 0) + " characters", when(d.ingested_at)].filter(Boolean).join(" · ")),
    ];
    if (chunk !== undefined) parts.push(el("p", { class: "meta" }, "Cited: chunk " + chunk));
    if (v.summary) {
      parts.push(el("h3", {}, "Summary"), el("p", {}, v.summary.summary || ""));
      const points = v.summary.key_points || [];
      if (points.length) parts.push(el("h3", {}, "Key points"), el("ul", {}, ...points.map((p) => el("li", {}, p))));
    }
    if (v.risks.length) {
      parts.push(el("h3", {}, "Risks"), table(v.risks, [["severity", "Severity"], ["title", "Risk"], ["owner", "Owner"], ["mitigation", "Mitigation"]]));
    }
    if (v.action_items.length) {
      parts.push(el("h3", {}, "Action items"), table(v.action_items, [["task", "Task"], ["owner", "Owner"], ["due_date", "Due"], ["priority", "Priority"]]));
    }
    if (v.members.length) {
      parts.push(el("h3", {}, "Files inside"), el("ul", {}, ...v.members.map((m) => el("li", {},
        el("a", { href: "#doc-" + m.doc_id, onclick: (e) => { e.preventDefault(); openDoc(m.doc_id); } }, m.title || m.source_uri)))));
    }
    if (v.failures.length) {
      parts.push(el("h3", {}, "Failures"), table(v.failures, [["stage", "Stage"], ["error_kind", "Kind"], ["error", "Error"]]));
    }
    body.replaceChildren(...parts);
    section.scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (e) {
    body.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// Search and ask.
async function search(event) {
  event.preventDefault();
  const list = $("hits");
  list.replaceChildren(el("li", { class: "muted" }, "Searching…"));
  try {
    const r = await json("/v1/search?k=10&q=" + encodeURIComponent($("q").value));
    list.replaceChildren(...r.hits.map((h) => el("li", {},
      el("div", { class: "item" },
        el("a", { href: "#doc-" + h.doc_id, onclick: (e) => { e.preventDefault(); openDoc(h.doc_id, h.chunk_idx); } }, h.title || h.source_uri),
        el("span", { class: "meta" }, "#" + h.chunk_idx)),
      el("p", { class: "snippet" }, h.snippet))));
    if (!r.hits.length) list.replaceChildren(el("li", { class: "muted" }, "No matching chunks."));
  } catch (e) {
    list.replaceChildren(el("li", { class: "error" }, e.message));
  }
}

async function ask(event) {
  event.preventDefault();
  const out = $("answer");
  out.replaceChildren(el("p", { class: "muted" }, "Thinking…"));
  try {
    const a = await json("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question: $("question").value }),
    });
    if (!a.found) {
      out.replaceChildren(el("p", { class: "muted" }, a.answer));
      return;
    }
    out.replaceChildren(el("div", { class: "answer" }, ...a.claims.map((c) => el("p", {}, c.text,
      ...c.citations.map((cite) => el("a", {
        class: "cite", href: "#doc-" + cite.doc_id,
        title: cite.title || cite.doc_id,
        onclick: (e) => { e.preventDefault(); openDoc(cite.doc_id, cite.chunk_idx); },
      }, "[" + (cite.title || cite.doc_id.slice(0, 8)) + " #" + cite.chunk_idx + "]"))))));
  } catch (e) {
    out.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// Wiring.
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => upload(e.dataTransfer.files));
$("file").addEventListener("change", (e) => { upload(e.target.files); e.target.value = ""; });
$("filter").addEventListener("input", () => { clearTimeout(loadDocs.timer); loadDocs.timer = setTimeout(loadDocs, 250); });
$("search-form").addEventListener("submit", search);
$("ask-form").addEventListener("submit", ask);
$("doc-close").addEventListener("click", () => { $("doc").hidden = true; });
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  localStorage.setItem("docstream-token", token);
  $("token-form").hidden = true;
  $("upload-error").hidden = true;
  loadDocs();
});
loadDocs();
