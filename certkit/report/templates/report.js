// certkit report: filters, sorting, opening a linked row and print preparation. Allowed by its hash in the page's
// Content-Security-Policy; it reads and changes this page only (no network, no storage).
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var root = document.getElementById("requirements");
  if (!form || !root) return;
  var groups = Array.prototype.slice.call(root.querySelectorAll("details.group"));
  // a requirement table is a div.req: a header table, then blocks of rows (div.cv, each a table the browser lays out
  // only when it is in view)
  var tables = Array.prototype.slice.call(root.querySelectorAll("div.req"));
  var rows = [];  // {tr, code, text, group, table}
  function headerOf(table) { return table.querySelector("table.head thead tr"); }
  function bodiesOf(table) { return Array.prototype.slice.call(table.querySelectorAll("div.cv tbody")); }
  tables.forEach(function (table) {
    var group = table.closest("details.group");
    bodiesOf(table).forEach(function (body) {
      Array.prototype.forEach.call(body.rows, function (tr) {
        rows.push({tr: tr, code: tr.className || "c", case: null, text: null, group: group, table: table});  // certified rows carry no class
      });
    });
  });
  var total = rows.length;
  var field = function (name) { return form.elements[name]; };
  var statusBoxes = Array.prototype.slice.call(form.querySelectorAll("input[name=status]"));

  function state() {
    var s = new URLSearchParams();
    var off = statusBoxes.filter(function (b) { return !b.checked; });
    if (off.length) s.set("status", statusBoxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }).join(","));
    ["outcome", "test", "case", "q"].forEach(function (name) { if (field(name).value) s.set(name, field(name).value); });
    if (sortState.column !== null) s.set("sort", sortState.column + (sortState.descending ? "-" : "+"));
    return s;
  }

  function load(hash) {
    if (hash.indexOf("#filter?") !== 0) return;
    var s = new URLSearchParams(hash.slice(8));
    if (s.has("status")) {
      var on = s.get("status").split(",");
      statusBoxes.forEach(function (b) { b.checked = on.indexOf(b.value) >= 0; });
    }
    ["outcome", "test", "case", "q"].forEach(function (name) { if (s.has(name)) field(name).value = s.get(name); });
    if (s.has("sort")) {
      var m = /^(.+)([+-])$/.exec(s.get("sort"));
      if (m) sortBy(m[1], m[2] === "-");
    }
  }

  function apply() {
    var codes = {};
    statusBoxes.forEach(function (b) { if (b.checked) codes[b.value] = true; });
    var outcome = field("outcome").value, test = field("test").value;
    var needle = field("case").value.toLowerCase(), q = field("q").value.toLowerCase();
    var active = statusBoxes.some(function (b) { return !b.checked; }) || outcome || test || needle || q;
    var shownIn = new Map(), shownTable = new Map(), shown = 0;
    rows.forEach(function (r) {
      if (r.text === null) {
        r.text = (r.group.dataset.test + " " + r.tr.textContent).toLowerCase();
        r.case = r.tr.cells[0].textContent.toLowerCase();
      }
      var ok = codes[r.code] === true &&
        (!outcome || r.table.dataset.outcome === outcome) &&
        (!test || r.group.dataset.test === test) &&
        (!needle || r.case.indexOf(needle) >= 0) &&
        (!q || r.text.indexOf(q) >= 0);
      if (r.tr.hidden === ok) r.tr.hidden = !ok;
      if (ok) {
        shown++;
        shownIn.set(r.group, (shownIn.get(r.group) || 0) + 1);
        shownTable.set(r.table, true);
        shownTable.set(r.tr.parentNode, true);
      }
    });
    tables.forEach(function (t) {
      t.hidden = !shownTable.get(t);
      bodiesOf(t).forEach(function (body) { body.closest("div.cv").hidden = !shownTable.get(body); });
    });
    groups.forEach(function (g) {
      var n = shownIn.get(g) || 0;
      g.hidden = n === 0;
      if (active && n) g.open = true;
    });
    document.getElementById("shown").textContent = active ? "showing " + shown + " of " + total + " requirement rows" : total + " requirement rows";
    document.documentElement.dataset.shown = String(shown);
    var s = state().toString();
    // the filter lives in the address; a link to a requirement's row (#r<N>, from the matrix) is left as it is
    if (s || location.hash.indexOf("#filter?") === 0) history.replaceState(null, "", s ? "#filter?" + s : location.pathname + location.search);
  }

  // a matrix mark links to its requirement's row: open its group (and show it if a filter hid it) before the jump
  function reveal(hash) {
    if (!/^#r\d+$/.test(hash)) return;
    var tr = document.getElementById(hash.slice(1));
    if (!tr) return;
    var group = tr.closest("details.group");
    if (group) { group.hidden = false; group.open = true; }
    var block = tr.closest("div.cv"), table = tr.closest("div.req");
    if (block) block.hidden = false;
    if (table) table.hidden = false;
    tr.hidden = false;
    tr.scrollIntoView({block: "center"});
  }
  window.addEventListener("hashchange", function () { reveal(location.hash); });

  var sortState = {column: null, descending: false};  // column: a header's data-key, so tables of other layouts sort alike
  function key(cell) {
    var t = cell ? cell.textContent : "";
    var x = parseFloat(t);
    if (t === "∞") return Infinity;
    if (t === "none" || t === "–") return -Infinity;
    return isNaN(x) ? t.toLowerCase() : x;
  }
  function columnOf(table, name) {
    var cells = headerOf(table).cells;
    for (var i = 0; i < cells.length; i++) if (cells[i].dataset.key === name) return i;
    return -1;
  }
  function sortBy(name, descending) {
    sortState = {column: name, descending: descending};
    tables.forEach(function (table) {
      var column = columnOf(table, name);
      Array.prototype.forEach.call(headerOf(table).cells, function (th, i) {
        th.setAttribute("aria-sort", i === column ? (descending ? "descending" : "ascending") : "none");
      });
      if (column < 0) return;
      var bodies = bodiesOf(table), items = [], sizes = [];
      bodies.forEach(function (body) {
        sizes.push(body.rows.length);
        Array.prototype.forEach.call(body.rows, function (tr) { items.push({tr: tr, k: key(tr.cells[column]), i: items.length}); });
      });
      items.sort(function (a, b) {
        var d = (typeof a.k === typeof b.k) ? (a.k < b.k ? -1 : a.k > b.k ? 1 : 0) : (typeof a.k === "number" ? -1 : 1);
        return (descending ? -d : d) || a.i - b.i;
      });
      var next = 0;  // refill the blocks in order, each with as many rows as it had
      bodies.forEach(function (body, b) {
        var frag = document.createDocumentFragment();
        for (var j = 0; j < sizes[b]; j++) frag.appendChild(items[next++].tr);
        body.appendChild(frag);
      });
    });
  }
  tables.forEach(function (table) {
    Array.prototype.forEach.call(headerOf(table).cells, function (th) {
      var name = th.dataset.key;
      var b = document.createElement("button");
      b.type = "button";
      b.className = "sort";
      b.textContent = th.textContent;
      b.title = "sort every table by " + name;
      th.textContent = "";
      th.appendChild(b);
      b.addEventListener("click", function () {
        sortBy(name, sortState.column === name ? !sortState.descending : false);
        apply();
      });
    });
  });

  // a case's prompt on hover, from the case index (the index holds it once per case)
  var prompts = new Map();
  var index = document.getElementById("case-index");
  if (index) Array.prototype.forEach.call(index.querySelectorAll("div.cv tr"), function (tr) { prompts.set(tr.cells[0].textContent, tr.cells[1].textContent); });
  root.addEventListener("mouseover", function (e) {
    var td = e.target.closest && e.target.closest("div.cv td:first-child");
    if (td && !td.title && prompts.has(td.textContent)) td.title = prompts.get(td.textContent);
  });

  // printing shows everything: every group open (the print style also shows filtered-out rows)
  var closed = [];
  window.addEventListener("beforeprint", function () {
    closed = groups.filter(function (g) { return !g.open; });
    closed.forEach(function (g) { g.open = true; });
  });
  window.addEventListener("afterprint", function () { closed.forEach(function (g) { g.open = false; }); closed = []; });

  form.addEventListener("input", apply);
  form.addEventListener("reset", function () { setTimeout(apply, 0); });  // after the form has reset its fields
  form.hidden = false;
  load(location.hash);
  apply();
  reveal(location.hash);
  document.documentElement.dataset.ready = String(Math.round(performance.now()));
})();
