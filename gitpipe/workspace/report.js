// gitpipe report: click a step for its details; zoom the graph; show matrix steps.
// Every value from the data is put in the page as text (textContent), never as markup.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var details = document.getElementById("details");

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function size(bytes) {
    if (bytes === null || bytes === undefined) return "?";
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0, n = bytes;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function table(headers, rows) {
    var t = el("table"), head = el("tr");
    headers.forEach(function (h) { head.appendChild(el("th", h)); });
    t.appendChild(head);
    rows.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (c) {
        var td = el("td", c[0], c[1]);
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    return t;
  }
  function select(name) {
    document.querySelectorAll(".dag .node.selected").forEach(function (n) {
      n.classList.remove("selected");
    });
    document.querySelectorAll(".dag .node").forEach(function (n) {
      if (n.getAttribute("data-step") === name || n.getAttribute("data-group") === name) {
        n.classList.add("selected");
      }
    });
  }
  function showStep(name) {
    var s = data.steps[name];
    if (!s) return;
    select(name);
    details.replaceChildren();
    details.setAttribute("data-shown", name);
    details.appendChild(el("h3", s.name));
    if (s.desc) details.appendChild(el("p", s.desc));
    var state = el("p");
    state.appendChild(el("b", "State: "));
    state.appendChild(document.createTextNode(s.state.replace(/-/g, " ") + " (repro would: " + s.action + ")"));
    details.appendChild(state);
    if (s.reasons.length) {
      var ul = el("ul", null, "reasons");
      s.reasons.forEach(function (r) { ul.appendChild(el("li", r)); });
      details.appendChild(el("b", "Why"));
      details.appendChild(ul);
    }
    if (s.group) details.appendChild(el("p", "One expansion of the matrix step " + s.group + "."));
    var last = el("p");
    last.appendChild(el("b", "Last run: "));
    last.appendChild(document.createTextNode(
      s.last_state ? s.last_state + (s.duration !== null ? ", " + s.duration.toFixed(2) + " s" : "")
                   : "not in the last run"));
    details.appendChild(last);
    if (s.key) {
      var key = el("p");
      key.appendChild(el("b", "Key: "));
      key.appendChild(el("code", s.key, "key"));
      details.appendChild(key);
    }
    if (s.parts.length) {
      details.appendChild(el("b", "Key components (against gitpipe.lock)"));
      details.appendChild(table(["kind", "name", "value", "vs lock"], s.parts.map(function (p) {
        return [[p.kind], [p.name], [p.value], [p.change || "no entry", "change-" + p.change]];
      })));
      details.lastChild.className = "parts";
    }
    details.appendChild(el("b", "Outputs"));
    if (s.outputs.length) {
      details.appendChild(table(["path", "digest", "size"], s.outputs.map(function (o) {
        return [[o.path], [o.digest || "not recorded", "digest"], [size(o.size)]];
      })));
      details.lastChild.className = "outputs";
    } else {
      details.appendChild(el("p", "none recorded"));
    }
    if (s.log_tail) {
      details.appendChild(el("b", "End of its last log"));
      details.appendChild(el("pre", s.log_tail, "log"));
    }
  }
  function showGroup(name) {
    var members = data.groups[name] || [];
    select(name);
    details.replaceChildren();
    details.setAttribute("data-shown", name);
    details.appendChild(el("h3", name));
    details.appendChild(el("p", "A matrix step: " + members.length + " expansions. Click one."));
    var ul = el("ul");
    members.forEach(function (m) {
      var li = el("li"), b = el("button", m, "member");
      b.type = "button";
      b.addEventListener("click", function () { showStep(m); });
      var s = data.steps[m];
      li.appendChild(b);
      if (s) li.appendChild(document.createTextNode(" " + s.state.replace(/-/g, " ")));
      ul.appendChild(li);
    });
    details.appendChild(ul);
  }
  function activate(node) {
    if (node.hasAttribute("data-group")) showGroup(node.getAttribute("data-group"));
    else showStep(node.getAttribute("data-step"));
  }
  document.querySelectorAll(".dag .node").forEach(function (node) {
    node.addEventListener("click", function () { activate(node); });
    node.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); activate(node); }
    });
  });
  document.querySelectorAll(".timeline .bar").forEach(function (bar) {
    bar.addEventListener("click", function () { showStep(bar.getAttribute("data-step")); });
  });

  var zoom = 1;
  function visibleSvg() {
    var view = document.querySelector(".dag-view:not([hidden])");
    return view ? view.querySelector("svg") : null;
  }
  function applyZoom() {
    document.querySelectorAll("svg.dag").forEach(function (svg) {
      var w = Number(svg.getAttribute("data-width")), h = Number(svg.getAttribute("data-height"));
      svg.setAttribute("width", String(Math.round(w * zoom)));
      svg.setAttribute("height", String(Math.round(h * zoom)));
    });
  }
  document.querySelectorAll("[data-zoom]").forEach(function (button) {
    button.addEventListener("click", function () {
      var factor = Number(button.getAttribute("data-zoom"));
      if (factor) {
        zoom = Math.min(4, Math.max(0.1, zoom * factor));
      } else {
        var svg = visibleSvg();
        if (!svg) return;
        var w = Number(svg.getAttribute("data-width"));
        zoom = Math.min(1, (svg.parentNode.clientWidth - 4) / w);
      }
      applyZoom();
    });
  });
  (function fitOnLoad() {  // a wide graph starts fitted to the page, down to 60%
    var svg = visibleSvg();
    if (!svg) return;
    var room = svg.parentNode.clientWidth - 4, w = Number(svg.getAttribute("data-width"));
    if (room > 0 && w > room) { zoom = Math.max(0.6, room / w); applyZoom(); }
  })();
  var expand = document.getElementById("expand");
  if (expand) {
    expand.addEventListener("change", function () {
      document.getElementById("view-grouped").hidden = expand.checked;
      document.getElementById("view-all").hidden = !expand.checked;
    });
  }
})();
