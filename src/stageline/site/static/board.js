// The board, filtered in place: by name as one types, and by view (all agents, for QA,
// ready to ship) without loading another page. Every page works without it: qa.html and
// ship.html are the views as plain pages. Loaded by <script src> (the pages' policy allows
// scripts of the site only, none inline); it reads the page's text and sets `hidden` on
// rows, and never turns text into HTML.
"use strict";
(function () {
  var table = document.querySelector("table.board");
  if (!table || !table.tBodies.length) {
    return;
  }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var views = document.querySelector("p.views");
  var heading = document.querySelector("h1");
  var current = views && views.querySelector("[aria-current]");
  var view = current ? current.getAttribute("data-view") : "all";

  var filter = document.createElement("p");
  filter.className = "filter";
  var label = document.createElement("label");
  label.setAttribute("for", "agent-filter");
  label.textContent = "Agents whose name holds ";
  var input = document.createElement("input");
  input.type = "search";
  input.id = "agent-filter";
  input.autocomplete = "off";
  var count = document.createElement("span");
  count.setAttribute("role", "status");
  filter.appendChild(label);
  filter.appendChild(input);
  filter.appendChild(count);
  var holder = table.parentNode.classList.contains("scroll") ? table.parentNode : table;
  holder.parentNode.insertBefore(filter, holder);

  function nameOf(row) {
    var link = row.cells[0].querySelector("a");
    return (link || row.cells[0]).textContent.toLowerCase();
  }

  function apply() {
    var needle = input.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var inView = view === "all" ||
        (row.getAttribute("data-views") || "").split(" ").indexOf(view) !== -1;
      row.hidden = !(inView && nameOf(row).indexOf(needle) !== -1);
      shown += row.hidden ? 0 : 1;
    });
    count.textContent = " " + shown + " of " + rows.length + " shown";
  }

  // On the board of all agents the view links filter in place (the page has every row),
  // and the view is kept in the address: index.html#qa, index.html#ship.
  function select(name) {
    var links = Array.prototype.slice.call(views.querySelectorAll("[data-view]"));
    var link = links.filter(function (l) { return l.getAttribute("data-view") === name; })[0];
    if (!link) {
      return;  // not a view of this board (the address may hold anything)
    }
    view = name;
    links.forEach(function (other) {
      if (other === link) {
        other.setAttribute("aria-current", "page");
      } else {
        other.removeAttribute("aria-current");
      }
    });
    heading.textContent = link.textContent.replace(/ \(\d+\)$/, "");
    apply();
  }

  if (view === "all" && views) {
    Array.prototype.forEach.call(views.querySelectorAll("[data-view]"), function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var name = link.getAttribute("data-view");
        location.hash = name === "all" ? "" : name;
        select(name);
      });
    });
    window.addEventListener("hashchange", function () {
      select(location.hash.slice(1) || "all");
    });
    if (location.hash) {
      select(location.hash.slice(1));
    }
  }
  input.addEventListener("input", apply);
  apply();
})();
