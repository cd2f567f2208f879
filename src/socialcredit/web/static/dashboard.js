// Draws the dashboard's figures and redraws them every 5 seconds from /dashboard/data.
"use strict";
(function () {
  const config = {displayModeBar: false, responsive: true};

  function draw(data) {
    for (const [name, fig] of Object.entries(data.figures)) {
      const el = document.getElementById("fig-" + name);
      if (el) Plotly.react(el, fig.data, fig.layout, config);
    }
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

  draw(JSON.parse(document.getElementById("dashboard-data").textContent));
  setTimeout(refresh, 5000);
})();
