// The operator console's only script. Pages read fine without it; it adds:
// - times in the browser's timezone, the time alone when it is today (UTC stays in the
//   tooltip);
// - a refresh of the page's <main> every 10 seconds while the tab is visible, no field has
//   the focus and no form holds what the operator typed or ticked, keeping the scroll position.
"use strict";
(function () {
  const REFRESH_MS = 10000;
  const pad = (n) => String(n).padStart(2, "0");

  function localTimes(root) {
    const today = new Date().toDateString();
    for (const el of root.querySelectorAll("time[datetime]")) {
      const at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) continue;
      const clock = pad(at.getHours()) + ":" + pad(at.getMinutes());
      if (!el.title) el.title = el.textContent; // The server's UTC text, kept for the hover.
      el.textContent = at.toDateString() === today
        ? clock + ":" + pad(at.getSeconds())
        : at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate()) + " " + clock;
    }
  }

  async function refresh() {
    if (document.hidden) return;
    // Not while the operator is typing in a field of the page.
    const active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA")) return;
    // Nor while a form of the page (pause, run now, silence...) holds what they filled in.
    const filled = [...document.querySelectorAll("#main form input:not([type=hidden]), #main form textarea")]
      .some((field) => (field.type === "checkbox" ? field.checked : field.value !== ""));
    if (filled) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        location.reload(); // Signed out meanwhile: show the sign-in page.
        return;
      }
      if (!response.ok) return; // Keep what is shown; the next tick tries again.
      const next = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("main");
      const main = document.getElementById("main");
      if (!next || !main) return;
      const x = window.scrollX, y = window.scrollY;
      main.replaceChildren(...next.childNodes);
      localTimes(main);
      window.scrollTo(x, y);
      document.documentElement.dataset.refreshed = String(Date.now());
    } catch (_) {
      // Offline for a moment: the next tick tries again.
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    if (document.getElementById("main") && !document.querySelector("section.signin")) {
      setInterval(refresh, REFRESH_MS);
    }
  });
})();
