// Tether dashboard: the few touches that need a browser. Every page works without it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Filters apply as soon as a choice is made.
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }

  // Optional auto-refresh, remembered per browser, for watching a rollout converge.
  const toggle = document.querySelector("#auto-refresh");
  if (toggle) {
    const key = "tether.autoRefresh";
    toggle.checked = localStorage.getItem(key) === "1";
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      if (toggle.checked) timer = setTimeout(() => location.reload(), 10000);
    };
    toggle.addEventListener("change", () => {
      localStorage.setItem(key, toggle.checked ? "1" : "0");
      arm();
    });
    arm();
  }
});
