// Search (filters rows as you type) and sortable columns; every page works without it.
(function () {
  "use strict";
  var box = document.getElementById("search");
  if (box) {
    var table = document.getElementById(box.getAttribute("aria-controls"));
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var count = document.getElementById("count");
    box.closest(".js-only").hidden = false;
    var filter = function () {
      var q = box.value.trim().toLowerCase(), shown = 0;
      rows.forEach(function (r) {
        var hit = !q || r.getAttribute("data-search").indexOf(q) !== -1;
        r.hidden = !hit;
        shown += hit ? 1 : 0;
      });
      count.textContent = shown + " of " + rows.length + " classes";
    };
    box.addEventListener("input", filter);
    filter();
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var b = document.createElement("button");
      b.type = "button";
      while (th.firstChild) { b.appendChild(th.firstChild); }
      th.appendChild(b);
      b.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rs = Array.prototype.slice.call(body.rows);
        var key = function (r) {
          var c = r.cells[col], v = c.getAttribute("data-v");
          return v === null ? c.textContent.trim().toLowerCase() : (v === "" ? null : parseFloat(v));
        };
        rs.sort(function (x, y) {
          var a = key(x), z = key(y);
          if (a === null) { return z === null ? 0 : 1; }  // missing figures last, either way
          if (z === null) { return -1; }
          var d = a < z ? -1 : (a > z ? 1 : 0);
          return asc ? d : -d;
        });
        rs.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
