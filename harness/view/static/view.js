"use strict";
// The viewer: per-prompt galleries, one row per evaluation and one column per seed, so that the images in a column
// are the same draw (prompt and seed) from each model; filters by tag, failing only and prompt text.
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const PAGE = 30;  // prompts rendered at a time: a full GenEval run has 553 prompts x 4 images per evaluation
  const $ = (id) => document.getElementById(id);
  let data = null, shown = PAGE;
  const selected = new Set([...params.getAll("source"), ...params.getAll("record"), ...params.getAll("run")]);

  function withToken(url) { return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url; }
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function syncUrl() {
    const next = new URLSearchParams();
    if (token) next.set("token", token);
    for (const id of selected) next.append("source", id);
    if ($("tag").value) next.set("tag", $("tag").value);
    if ($("failing").checked) next.set("failing", "1");
    if ($("search").value.trim()) next.set("q", $("search").value.trim());
    history.replaceState(null, "", "?" + next.toString());
  }

  function columnKey(cell) { return cell.seed === null || cell.seed === undefined ? "#" + cell.image_index : String(cell.seed); }

  // The prompts and columns to draw under the current filters.
  function visible() {
    const tag = $("tag").value, failing = $("failing").checked, words = $("search").value.trim().toLowerCase();
    const ids = data.sources.map((s) => s.id).filter((id) => selected.has(id));
    const out = [];
    for (const prompt of data.prompts) {
      if (!ids.some((id) => prompt.cells[id])) continue;
      if (tag && prompt.tag !== tag) continue;
      if (words && !prompt.prompt.toLowerCase().includes(words)) continue;
      const columns = new Map();  // seed -> {source id: cell}
      for (const id of ids) for (const cell of prompt.cells[id] || []) {
        const key = columnKey(cell);
        if (!columns.has(key)) columns.set(key, {});
        columns.get(key)[id] = cell;
      }
      let keys = [...columns.keys()];
      if (failing) keys = keys.filter((k) => Object.values(columns.get(k)).some((c) => c.verdict === "fail"));
      if (keys.length) out.push({prompt, ids: ids.filter((id) => prompt.cells[id]), keys, columns});
    }
    return out;
  }

  function cellNode(cell) {
    const td = el("td", {class: "cell"});
    if (!cell) { td.append(el("div", {class: "noimg"}, "not drawn by this evaluation")); return td; }
    td.dataset.verdict = cell.verdict;
    td.title = cell.details;
    if (cell.url) td.append(el("img", {src: withToken(cell.url), alt: `seed ${cell.seed}`, loading: "lazy"}));
    else td.append(el("div", {class: "noimg"}, "image not on this machine (pass its image store with --store)"));
    const score = cell.score === null ? "excluded" : `${cell.verdict} ${Number(cell.score).toFixed(2)}`;
    td.append(el("div", {class: "verdict " + cell.verdict}, score));
    if (cell.reason) td.append(el("div", {class: "reason"}, cell.reason));
    return td;
  }

  function render() {
    const labels = Object.fromEntries(data.sources.map((s) => [s.id, s.label]));
    const items = visible();
    const gallery = $("gallery"); gallery.textContent = "";
    let images = 0;
    for (const {prompt, ids, keys, columns} of items.slice(0, shown)) {
      const section = el("section", {class: "prompt", "data-tag": prompt.tag, "data-prompt-index": prompt.prompt_index});
      const title = el("h3", {}, prompt.prompt);
      title.append(el("span", {class: "tagname"}, `${prompt.tag} · ${prompt.benchmark} #${prompt.prompt_index}`));
      section.append(title);
      const table = el("table", {class: "side"});
      const head = el("tr"); head.append(el("th", {}, "seed"));
      for (const key of keys) head.append(el("th", {}, key));
      table.append(head);
      for (const id of ids) {
        const tr = el("tr", {"data-source": id}); tr.append(el("th", {}, labels[id]));
        for (const key of keys) { const cell = columns.get(key)[id]; tr.append(cellNode(cell)); images += cell ? 1 : 0; }
        table.append(tr);
      }
      section.append(table); gallery.append(section);
    }
    $("count").textContent = `${Math.min(shown, items.length)} of ${items.length} prompts · ${images} images`;
    $("more").hidden = items.length <= shown;
  }

  function setup() {
    if (data.leaderboard) { $("leaderboard-link").hidden = false; $("leaderboard-link").href = withToken("leaderboard.html"); }
    const known = new Set(data.sources.map((s) => s.id));
    for (const id of [...selected]) if (!known.has(id)) { selected.delete(id); $("message").textContent = `no evaluation ${id} here`; }
    if (!selected.size) {
      const runs = data.sources.filter((s) => s.kind === "run");
      for (const s of runs.length ? runs : data.sources) selected.add(s.id);
    }
    for (const s of data.sources) {
      const box = el("input", {type: "checkbox", value: s.id, "data-source": s.id});
      box.checked = selected.has(s.id);
      box.addEventListener("change", () => { box.checked ? selected.add(s.id) : selected.delete(s.id); changed(); });
      const label = el("label", {title: `${s.source} · ${s.with_images}/${s.n_images} images here`});
      const overall = s.scores.overall === null || s.scores.overall === undefined ? "" : ` (overall ${Number(s.scores.overall).toFixed(3)})`;
      label.append(box, ` ${s.label} · ${s.benchmark}${overall}`);
      $("sources").append(label);
    }
    const tags = [...new Set(data.prompts.map((p) => p.tag))].sort();
    for (const tag of tags) $("tag").append(el("option", {value: tag}, tag));
    const wanted = params.get("tag") || "";
    if (wanted && !tags.includes(wanted)) $("message").textContent = `"${wanted}" is a score of its own (no prompt has that tag): showing every tag`;
    else $("tag").value = wanted;
    $("failing").checked = params.get("failing") === "1";
    $("search").value = params.get("q") || "";
  }

  function changed() { shown = PAGE; syncUrl(); render(); }

  $("tag").addEventListener("change", changed);
  $("failing").addEventListener("change", changed);
  $("search").addEventListener("input", changed);
  $("more").addEventListener("click", () => { shown += PAGE; render(); });
  fetch(withToken("api/gallery")).then(async (response) => {
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    data = body; setup(); syncUrl(); render();
  }).catch((err) => { $("message").textContent = err.message; });
})();
