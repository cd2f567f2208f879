// Draws the dashboard's figures and redraws them every 5 seconds from /dashboard/data; a bar that
// stands for citizens (a class, a group) opens the list of them.
"use strict";
(function () {
  const config = {displayModeBar: false, responsive: true};
  const linked = new Set();

  // The run's groups and regions, once its figures are ready (they were not at the first view).
  function links(id, items, filter, text) {
    const list = document.getElementById(id);
    if (!list || list.children.length || !items.length) return;
    for (const item of items) {
      const entry = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/dashboard/citizens?${filter}=` + encodeURIComponent(item.name);
      link.textContent = item.name;
      entry.append(link, text(item));
      list.append(entry);
    }
  }

  function draw(data) {
    for (const [name, fig] of Object.entries(data.figures)) {
      const el = document.getElementById("fig-" + name);
      if (!el) continue;
      Plotly.react(el, fig.data, fig.layout, config);
      if (!linked.has(name)) {
        linked.add(name);
        el.on("plotly_click", (event) => {
          const target = event.points[0] && event.points[0].customdata;
          if (typeof target === "string" && target.startsWith("/dashboard/citizens")) window.location.href = target;
        });
      }
    }
    for (const [name, n] of Object.entries(data.classes)) {
      const el = document.querySelector(`[data-count="${CSS.escape(name)}"]`);
      if (el) el.textContent = n.toLocaleString("en");
    }
    links("groups", data.groups, "group",
          (g) => `: false matches ×${g.fmr_multiplier}, ${+(g.share * 100).toFixed(2)}% of citizens`);
    links("regions", data.regions, "region", (r) => `: ${r.citizens.toLocaleString("en")} citizens`);
    document.getElementById("n-day").textContent = data.day;
    document.getElementById("n-date").textContent = data.date;
    document.getElementById("n-events").textContent = data.events.toLocaleString("en");
    document.getElementById("n-rate").textContent = data.per_minute;
    document.getElementById("n-pending").textContent = data.pending_batches;
    document.getElementById("n-open").textContent = data.appeals.open || 0;
  }

  async function refresh() {
    try {
      const response = await fetch("/dashboard/data", {credentials: "same-origin"});
      if (response.ok) draw(await response.json());
    } catch (err) {
      // The server may be restarting; the next refresh tries again.
    }
    setTimeout(refresh, 5000);
  }

  const first = JSON.parse(document.getElementById("dashboard-data").textContent);
  draw(first);
  // The run's figures are read on a thread of their own: ask again soon if they were not ready.
  setTimeout(refresh, first.simulated && !first.simulated_ready ? 1000 : 5000);
})();
