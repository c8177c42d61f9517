"use strict";
// The labeling page: fetch the annotator's next prompt, collect picks and flags, save each judgment with one POST.
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const $ = (id) => document.getElementById(id);
  let annotator = params.get("annotator") || localStorage.getItem("harness-annotator") || "";
  let state = null;      // the server's state for this annotator
  let order = [];        // image names in screen order (the ranking, in ranking mode)
  let best = null, worst = null, placed = 0, cursor = 0, shownAt = 0, busy = false;
  let distorted = new Set(), unsafe = new Set();

  function headers() { return {"Content-Type": "application/json", "X-Harness-Token": token}; }
  function say(text, kind) { $("message").textContent = text; $("message").className = kind || ""; }
  function requestId() {
    const bytes = new Uint8Array(12); crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function call(method, path, body) {
    const url = path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await fetch(url, {method, headers: headers(), body: body && JSON.stringify(body)});
        const data = await response.json();
        if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), {fatal: true});
        return data;
      } catch (err) {
        // A network error is retried with the same request id, so the server stores the label once.
        if (err.fatal || attempt >= 4) throw err;
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
  }

  function show(next) {
    state = next;
    $("round").textContent = state.round || "no round yet";
    $("mode").textContent = state.mode;
    const p = state.progress;
    $("progress").max = Math.max(p.total, 1); $("progress").value = p.done;
    $("progress-text").textContent = `${Math.min(p.done + (state.item ? 1 : 0), p.total)} of ${p.total}`;
    const rs = state.round_status;
    $("round-status").textContent = rs ? `· round: ${rs.labelled}/${rs.prompts} prompts labelled` +
      (rs.closed ? " (closed)" : "") : "";
    $("undo").disabled = !state.can_undo;
    best = worst = null; placed = 0; cursor = 0; distorted = new Set(); unsafe = new Set();
    const grid = $("grid"); grid.textContent = "";
    if (!state.item) {
      $("prompt").textContent = state.round ? "All done for this round: thank you." : (state.message || "");
      $("hint").textContent = state.round ? "Labels are saved. Undo (z) brings back the last prompt." : "";
      order = []; return;
    }
    $("prompt").textContent = state.item.prompt + (state.item.showing ? "  (shown again)" : "");
    $("hint").textContent = {
      "best": "Flag distorted (d) / unsafe (u) images first, then click or press the number of the best image.",
      "best-worst": "Pick the best image, then the worst one; flags with d / u.",
      "ranking": "Drag the images into order, best first (or press their numbers in order), then Enter.",
      "flags": "Flag every distorted (d) or unsafe (u) image, then Enter (no flag = all fine).",
    }[state.mode];
    order = state.item.images.map((im) => im.name);
    shownAt = performance.now();
    render();
  }

  function render() {
    const grid = $("grid"); grid.textContent = "";
    const byName = Object.fromEntries(state.item.images.map((im) => [im.name, im]));
    order.forEach((name, n) => {
      const card = document.createElement("div");
      card.className = "card" + (n === cursor ? " cursor" : "") + (name === best ? " best" : "") +
        (name === worst ? " worst" : "");
      card.dataset.name = name; card.draggable = state.mode === "ranking";
      card.setAttribute("role", "option");
      const img = document.createElement("img"); img.src = byName[name].url; img.alt = `image ${n + 1}`;
      const badge = document.createElement("span"); badge.className = "badge"; badge.textContent = n + 1;
      card.append(img, badge);
      if (state.mode === "ranking" && n < placed) {
        const rank = document.createElement("span"); rank.className = "rank"; rank.textContent = `#${n + 1}`;
        card.append(rank);
      }
      if (name === best || name === worst) {
        const tag = document.createElement("div"); tag.className = "tag";
        tag.textContent = name === best ? "BEST" : "WORST"; card.append(tag);
      }
      const flags = document.createElement("div"); flags.className = "flags";
      for (const [label, set] of [["distorted", distorted], ["unsafe", unsafe]]) {
        const b = document.createElement("button"); b.type = "button"; b.textContent = label;
        b.className = set.has(name) ? "on" : "";
        b.addEventListener("click", (e) => { e.stopPropagation(); toggle(set, name); });
        flags.append(b);
      }
      card.append(flags);
      card.addEventListener("click", () => pick(n));
      card.addEventListener("dragstart", (e) => { e.dataTransfer.setData("text/plain", name);
        card.classList.add("dragging"); });
      card.addEventListener("dragover", (e) => e.preventDefault());
      card.addEventListener("drop", (e) => {
        e.preventDefault();
        const from = order.indexOf(e.dataTransfer.getData("text/plain"));
        if (from < 0) return;
        const [moved] = order.splice(from, 1); order.splice(n, 0, moved);
        placed = order.length; render();
      });
      grid.append(card);
    });
  }

  function toggle(set, name) { set.has(name) ? set.delete(name) : set.add(name); render(); }

  function pick(n) {
    if (!state || !state.item || n >= order.length) return;
    cursor = n;
    const name = order[n];
    if (state.mode === "best") { best = name; render(); submit(); return; }
    if (state.mode === "best-worst") {
      if (best === null || best === name) { best = name; render(); return; }
      worst = name; render(); submit(); return;
    }
    if (state.mode === "ranking") {
      if (n >= placed) { const [moved] = order.splice(n, 1); order.splice(placed, 0, moved); placed++; }
      if (placed === order.length - 1) placed = order.length;
      cursor = Math.min(placed, order.length - 1); render(); return;
    }
    render();
  }

  async function post(path, body) {
    if (busy) return; busy = true;
    try { show(await call("POST", path, body)); say(body.action === "skip" ? "skipped" : "saved", "ok"); }
    catch (err) { say(err.message, "error"); }
    finally { busy = false; }
  }

  function submit() {
    if (!state || !state.item) return;
    const body = {round: state.round, annotator, group: state.item.group, showing: state.item.showing,
      action: "choice", distorted: [...distorted], unsafe: [...unsafe], display: state.item.images.map((i) => i.name),
      elapsed_ms: Math.round(performance.now() - shownAt), request_id: requestId()};
    if (state.mode === "ranking") body.ranking = order.slice();
    else if (state.mode !== "flags") {
      if (best === null) { say("pick the best image first (or skip with s)", "error"); return; }
      if (state.mode === "best-worst" && worst === null) { say("now pick the worst image", "error"); return; }
      body.best = best; if (worst !== null) body.worst = worst;
    }
    post("api/label", body);
  }

  function skip() {
    if (!state || !state.item) return;
    post("api/label", {round: state.round, annotator, group: state.item.group, showing: state.item.showing,
      action: "skip", elapsed_ms: Math.round(performance.now() - shownAt), request_id: requestId()});
  }

  async function undo() {
    if (busy) return; busy = true;
    try { const next = await call("POST", "api/undo", {annotator}); show(next);
      say(next.undone ? "undone: that prompt is back" : "nothing to undo", "ok"); }
    catch (err) { say(err.message, "error"); }
    finally { busy = false; }
  }

  async function closeRound() {
    if (!confirm("Finish this round now? The training run goes on with the labels saved so far.")) return;
    try { show(await call("POST", "api/close", {annotator})); say("round closed", "ok"); }
    catch (err) { say(err.message, "error"); }
  }

  async function load() {
    if (!/^[A-Za-z0-9_.-]{1,40}$/.test(annotator)) {
      say("type your annotator id (letters, digits, . _ -) and press set", "error"); $("annotator").focus(); return;
    }
    localStorage.setItem("harness-annotator", annotator);
    $("annotator").value = annotator;
    try { show(await call("GET", "api/state?annotator=" + encodeURIComponent(annotator))); }
    catch (err) { say(err.message, "error"); }
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (!state || !state.item) { if (e.key === "z") undo(); return; }
    const n = state.item.images.length;
    if (/^[1-9]$/.test(e.key)) {
      const i = Number(e.key) - 1;
      if (i < n) { if (state.mode === "flags") { cursor = i; render(); } else pick(i); }
    } else if (e.key === "ArrowRight") { cursor = (cursor + 1) % n; render(); }
    else if (e.key === "ArrowLeft") { cursor = (cursor + n - 1) % n; render(); }
    else if (e.key === "d") toggle(distorted, order[cursor]);
    else if (e.key === "u") toggle(unsafe, order[cursor]);
    else if (e.key === "Enter") submit();
    else if (e.key === "s") skip();
    else if (e.key === "z") undo();
    else if (e.key === "Escape") { best = worst = null; placed = 0; distorted.clear(); unsafe.clear(); render(); }
    else if (e.key === "?") $("help").open = !$("help").open;
    else return;
    e.preventDefault();
  });
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", () => { best = worst = null; placed = 0; distorted.clear(); unsafe.clear();
    if (state && state.item) render(); });
  $("close-round").addEventListener("click", closeRound);
  $("set-annotator").addEventListener("click", () => { annotator = $("annotator").value.trim(); load(); });
  $("annotator").addEventListener("keydown", (e) => { if (e.key === "Enter") { annotator = e.target.value.trim();
    load(); e.target.blur(); } });
  // A page left open follows the run: when this round is done, look for the next one every few seconds.
  setInterval(() => { if (annotator && state && !state.item && !busy) load(); }, 5000);
  load();
})();
