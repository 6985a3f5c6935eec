// tagsmith UI: keyboard shortcuts, autocomplete, lazy taxonomy tree. No build step.
// Every piece of data is put into the page with textContent / attributes, never as HTML.
"use strict";

function typing(event) {
  const t = event.target;
  return t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
}

function el(tag, props, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.json();
}

// ---- autocomplete: <input data-autocomplete="/ui/taxonomy/search.json" [data-leaves] [data-go=node] [data-label=ID]>
function setupAutocomplete(input) {
  const list = el("ul", {"class": "suggest", "role": "listbox"});
  list.hidden = true;
  input.insertAdjacentElement("afterend", list);
  input.setAttribute("aria-autocomplete", "list");
  let active = -1, timer = null, items = [];
  const label = input.dataset.label ? document.getElementById(input.dataset.label) : null;

  function choose(hit) {
    list.hidden = true;
    if (input.dataset.go === "node") {
      window.location.href = "/ui/taxonomy/node?id=" + encodeURIComponent(hit.id);
      return;
    }
    input.value = hit.id;
    if (label) label.textContent = hit.path || hit.name;
    input.dispatchEvent(new Event("change"));
  }
  function paint() {
    list.replaceChildren();
    items.forEach((hit, i) => {
      const li = el("li", {"role": "option", "data-id": hit.id});
      li.appendChild(el("span", {"class": "name"}, hit.name));
      li.appendChild(el("span", {"class": "path"}, hit.path));
      if (i === active) li.classList.add("active");
      li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(hit); });
      list.appendChild(li);
    });
    list.hidden = items.length === 0;
  }
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) { items = []; paint(); return; }
    timer = setTimeout(async () => {
      try {
        const url = input.dataset.autocomplete + "?q=" + encodeURIComponent(q) + (input.dataset.leaves ? "&leaves=1" : "");
        const data = await getJSON(url);
        if (input.value.trim() !== q) return;
        items = data.hits || []; active = items.length ? 0 : -1; paint();
      } catch (e) { items = []; paint(); }
    }, 120);
  });
  input.addEventListener("keydown", (e) => {
    if (list.hidden) return;
    if (e.key === "ArrowDown") { active = Math.min(items.length - 1, active + 1); paint(); e.preventDefault(); }
    else if (e.key === "ArrowUp") { active = Math.max(0, active - 1); paint(); e.preventDefault(); }
    else if (e.key === "Enter" && active >= 0) { e.preventDefault(); choose(items[active]); }
    else if (e.key === "Escape") { list.hidden = true; e.stopPropagation(); }
  });
  input.addEventListener("blur", () => setTimeout(() => { list.hidden = true; }, 150));
}

// ---- the correct form's attribute fields: rebuilt for the category picked, from
// /ui/queue/attributes.json; a value the reviewer set (or the tagger suggested) is kept for
// an attribute the new category has too. A submit while they load waits for them.
function setupAttributes(fieldset) {
  const form = fieldset.closest("form");
  const input = form && form.querySelector("#category");
  const box = document.getElementById("attribute-fields");
  const forInput = document.getElementById("attrs-for");
  const pathLabel = document.getElementById("attrs-path");
  if (!input || !box || !forInput) return;
  let suggested = {};
  try { suggested = JSON.parse(fieldset.dataset.suggested || "{}"); } catch (e) { suggested = {}; }
  let loading = null, submitWhenLoaded = false, tried = forInput.value;

  function currentValues() {
    const out = {};
    box.querySelectorAll("[name^='attr.']").forEach((field) => {
      const id = field.name.slice(5);
      if (field.tagName === "SELECT") out[id] = Array.from(field.selectedOptions).map((o) => o.value).filter(Boolean);
      else out[id] = field.value.split(",").map((v) => v.trim()).filter(Boolean);
    });
    return out;
  }
  function build(data, keep) {
    box.replaceChildren();
    for (const attr of data.attributes) {
      const chosen = keep[attr.id] || suggested[attr.id] || [];
      const label = el("label", {"class": "attr", "data-attribute": attr.id}, attr.name + (attr.unit ? " (" + attr.unit + ")" : "") + " ");
      let field;
      if (attr.closed) {
        field = el("select", {"name": "attr." + attr.id});
        if (attr.multi) { field.multiple = true; field.size = Math.min(attr.values.length, 5); }
        else field.appendChild(el("option", {"value": ""}, "—"));
        for (const v of attr.values) {
          const option = el("option", {"value": v.id}, v.name);
          option.selected = chosen.includes(v.id);
          field.appendChild(option);
        }
      } else {
        field = el("input", {"name": "attr." + attr.id, "size": "30"});
        if (attr.multi) field.placeholder = "several: comma-separated";
        field.value = chosen.join(", ");
      }
      label.appendChild(field);
      box.appendChild(label);
    }
    if (!data.attributes.length) box.appendChild(el("p", {"class": "meta"}, "No attributes."));
    forInput.value = data.category;
    if (pathLabel) pathLabel.textContent = data.path || data.category;
  }
  input.addEventListener("change", () => {
    const category = input.value.trim();
    if (!category || category === forInput.value) return;
    tried = category;
    const keep = currentValues();
    const request = loading = getJSON(fieldset.dataset.source + "?category=" + encodeURIComponent(category))
      .then((data) => { if (request === loading && data.known) build(data, keep); })
      .catch(() => {})  // the server shows the right fields when the form is sent
      .finally(() => {
        if (request !== loading) return;
        loading = null;
        if (submitWhenLoaded) { submitWhenLoaded = false; form.requestSubmit(); }
      });
  });
  form.addEventListener("submit", (event) => {
    const category = input.value.trim();
    if (category !== forInput.value && category !== tried && !loading) input.dispatchEvent(new Event("change"));
    if (loading) { event.preventDefault(); submitWhenLoaded = true; }
  });
}

// ---- lazy tree: <details data-node=ID> loads its children when first opened
function setupTree(details) {
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    const ul = details.querySelector("ul");
    try {
      const data = await getJSON("/ui/taxonomy/children.json?parent=" + encodeURIComponent(details.dataset.node));
      for (const child of data.items) {
        const li = el("li");
        const link = el("a", {"href": "/ui/taxonomy/node?id=" + encodeURIComponent(child.id)}, child.name);
        if (child.deprecated) link.classList.add("deprecated");
        if (child.is_leaf) { li.appendChild(link); }
        else {
          const sub = el("details", {"data-node": child.id});
          const summary = el("summary");
          summary.appendChild(link);
          sub.appendChild(summary);
          sub.appendChild(el("ul", {"class": "tree"}));
          li.appendChild(sub);
          setupTree(sub);
        }
        ul.appendChild(li);
      }
      if (!data.items.length) ul.appendChild(el("li", {"class": "meta"}, "no children"));
    } catch (e) {
      ul.appendChild(el("li", {"class": "error-message"}, "could not load: " + e.message));
      delete details.dataset.loaded;
    }
  });
}

// ---- keyboard shortcuts
function click(selector) {
  const target = document.querySelector(selector);
  if (!target) return false;
  if (target.tagName === "FORM") target.requestSubmit(); else target.click();
  return true;
}

function moveSelection(step) {
  const rows = Array.from(document.querySelectorAll("[data-row]"));
  if (!rows.length) return;
  let i = rows.findIndex((r) => r.classList.contains("selected"));
  i = Math.max(0, Math.min(rows.length - 1, (i < 0 ? (step > 0 ? -1 : 0) : i) + step));
  rows.forEach((r) => r.classList.remove("selected"));
  rows[i].classList.add("selected");
  const link = rows[i].querySelector("a");
  if (link) link.focus();
}

function toggleHelp() {
  const help = document.getElementById("help");
  if (help) help.hidden = !help.hidden;
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(event)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const page = document.body.dataset.page;
  const key = event.key;
  let handled = false;
  if (key === "/") {
    const search = document.querySelector("#search, #category, [data-autocomplete]");
    if (search) { search.focus(); search.select && search.select(); handled = true; }
  } else if (key === "?") { toggleHelp(); handled = true; }
  else if (page === "item") {
    if (key === "a") handled = click("form#accept");
    else if (key === "s") handled = click("form#skip");
    else if (key === "c") { const c = document.getElementById("category"); if (c) { c.focus(); c.select(); handled = true; } }
    else if (key === "j") handled = click("a#next");
    else if (key === "k") handled = click("a#prev");
    else if (key === "u") handled = click("a#up");
    else if (/^[1-9]$/.test(key)) {
      const candidate = document.querySelectorAll("[data-candidate]")[Number(key) - 1];
      const input = document.getElementById("category");
      if (candidate && input) {
        input.value = candidate.dataset.candidate;
        const label = document.getElementById("category-path");
        if (label) label.textContent = candidate.dataset.path;
        input.dispatchEvent(new Event("change"));
        input.focus();
        handled = true;
      }
    }
  } else if (page === "queue") {
    if (key === "j") { moveSelection(1); handled = true; }
    else if (key === "k") { moveSelection(-1); handled = true; }
    else if (key === "n") handled = click("form#review-next");
    else if (key === "Enter" || key === "o") {
      const row = document.querySelector("[data-row].selected a") || document.querySelector("[data-row] a");
      if (row) { row.click(); handled = true; }
    }
  }
  if (handled) event.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-autocomplete]").forEach(setupAutocomplete);
  document.querySelectorAll("details[data-node]").forEach(setupTree);
  document.querySelectorAll("fieldset#attributes").forEach(setupAttributes);
  const first = document.querySelector("[data-row]");
  if (first && document.body.dataset.page === "queue") first.classList.add("selected");
});
