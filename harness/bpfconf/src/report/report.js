"use strict";
const cells = JSON.parse(document.getElementById("cells").textContent);
const $ = (id) => document.getElementById(id);
const rows = document.querySelectorAll("#matrix tr.case");

function filter() {
  const type = $("f-type").value;
  const outcome = $("f-outcome").value;
  const text = $("f-text").value.toLowerCase();
  let shown = 0;
  for (const body of document.querySelectorAll("#matrix tbody")) {
    let any = false;
    for (const tr of body.querySelectorAll("tr.case")) {
      const os = tr.dataset.o.split(" ");
      const ok = (!type || body.dataset.type === type)
        && (!outcome || (outcome === "notpass" ? os.some((o) => o !== "pass") : os.includes(outcome)))
        && (!text || tr.dataset.text.includes(text));
      tr.hidden = !ok;
      any ||= ok;
      shown += ok;
    }
    body.hidden = !any;
  }
  $("shown").textContent = `${shown} of ${rows.length} cases shown`;
}

function el(tag, text, parent) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (parent) parent.append(e);
  return e;
}

function list(parent, pairs) {
  const dl = el("dl", null, parent);
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    el("dt", k, dl);
    el("dd", v, dl);
  }
}

// `12 ns per run (median of 5 rounds × 1000 runs; 9–14)`, marked when emulated.
function runCost(r) {
  const emulated = r.emulated ? ", under emulation: an order of magnitude" : "";
  return `${r.ns_per_run_median} ns per run (median of ${r.rounds} rounds × ${r.repeat} runs; ${r.min}–${r.max}${emulated})`;
}

function show(i) {
  const c = cells[i];
  const body = $("d-body");
  body.replaceChildren();
  $("d-title").textContent = `${c.case} on ${c.kernel}: ${c.outcome}`;
  list(body, [["kernel release", c.release], ["duration", c.duration_ms == null ? null : `${c.duration_ms} ms`]]);
  if (c.reason) {
    el("h3", "Reason", body);
    el("pre", c.reason, body);
  }
  const measured = Object.entries(c.details || {});
  if (measured.length) {
    el("h3", "Measured", body);
    list(body, measured.map(([k, v]) => [k, JSON.stringify(v)]));
  }
  for (const l of c.loads) {
    el("h3", `Object ${l.object}: ${l.loaded ? "loaded" : "refused"}`, body);
    list(body, [["errno", l.errno], ["refused program", l.failed_program], ["verifier key line", l.message]]);
    for (const [name, p] of Object.entries(l.programs)) {
      el("h4", `Program ${name}`, body);
      const cost = c.run_cost[name];
      list(body, [
        ...Object.entries({ ...p.stats, ...p.size }).map(([k, v]) => [k.replaceAll("_", " "), v]),
        ["run cost", cost && runCost(cost)],
      ]);
      const log = el("details", null, body);
      log.open = !l.loaded && l.failed_program === name;
      const lines = p.log ? p.log.split("\n").length : 0;
      el("summary", `verifier log (${lines} lines)`, log);
      el("pre", p.log || "(empty)", log);
    }
  }
  history.replaceState(null, "", `#${encodeURIComponent(`${c.case}@${c.kernel}`)}`);
  if (!$("detail").open) $("detail").showModal();
}

// `#<case>@<kernel>` opens that cell: a cell's details can be linked to.
function fromHash() {
  const at = decodeURIComponent(location.hash.slice(1));
  const i = cells.findIndex((c) => `${c.case}@${c.kernel}` === at);
  if (i >= 0) show(i);
}

const matrix = $("matrix");
matrix.addEventListener("click", (e) => {
  const td = e.target.closest("td.cell[data-i]");
  if (td) show(Number(td.dataset.i));
});
matrix.addEventListener("keydown", (e) => {
  const td = e.target.closest("td.cell[data-i]");
  if (td && e.key === "Enter") show(Number(td.dataset.i));
});
$("detail").addEventListener("close", () => history.replaceState(null, "", location.pathname));
for (const id of ["f-type", "f-outcome", "f-text"]) $(id).addEventListener("input", filter);
window.addEventListener("hashchange", fromHash);
filter();
fromHash();
