// Draws every chart of the page (a Plotly figure as JSON in data-figure) and wires the
// jobs page's write buttons to the JSON API, with the API key the operator typed.
"use strict";

function drawCharts() {
  for (const element of document.querySelectorAll("[data-figure]")) {
    const figure = JSON.parse(element.dataset.figure);
    Plotly.newPlot(element, figure.data, figure.layout, { responsive: true, displaylogo: false });
  }
}

function wireModelJobs() {
  const form = document.getElementById("model-job");
  if (!form) return;
  const answer = document.getElementById("model-job-answer");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter.value;
    const headers = {};
    if (form.key.value) headers["X-API-Key"] = form.key.value;
    const response = await fetch(`/v1/admin/${action}`, { method: "POST", headers });
    const body = await response.json();
    answer.textContent = response.ok
      ? `${action}: job ${body.id} ${body.status}`
      : `${action} refused (${response.status}): ${body.detail}`;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  wireModelJobs();
});
