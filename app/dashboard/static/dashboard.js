// Live parts of the dashboard: the jobs table and a job's progress refresh themselves while
// jobs run. No framework; the server renders everything, this only fetches and swaps.
"use strict";

(function () {
  const ACTIVE_MS = 1000;
  const IDLE_MS = 10000;

  function later(fn, ms) {
    window.setTimeout(function () {
      if (document.hidden) {
        document.addEventListener("visibilitychange", function once() {
          if (!document.hidden) {
            document.removeEventListener("visibilitychange", once);
            fn();
          }
        });
      } else {
        fn();
      }
    }, ms);
  }

  async function fetchOk(url, accept) {
    const response = await fetch(url, {
      headers: { Accept: accept },
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.status === 401) {
      window.location.reload(); // signed out (key revoked, session expired): show the sign-in
      return null;
    }
    return response.ok ? response : null;
  }

  function liveRows(tbody) {
    const url = tbody.getAttribute("data-live-rows");
    const state = document.querySelector("[data-live-state]");
    async function tick() {
      let active = tbody.querySelector('tr[data-status="queued"], tr[data-status="running"]') !== null;
      try {
        const response = await fetchOk(url, "text/html");
        if (response) {
          const html = await response.text();
          if (html.trim() !== tbody.innerHTML.trim()) tbody.innerHTML = html;
          active = Number(response.headers.get("X-Active-Jobs") || "0") > 0;
          if (state) state.textContent = active ? "Updating live: jobs are running." : "Up to date; checking for new jobs.";
        }
      } catch (err) {
        if (state) state.textContent = "Connection lost; retrying.";
      }
      later(tick, active ? ACTIVE_MS : IDLE_MS);
    }
    later(tick, ACTIVE_MS);
  }

  function liveJob(head) {
    const url = head.getAttribute("data-live-job");
    const initial = head.getAttribute("data-status");
    const initialCancel = head.getAttribute("data-cancel") === "true";
    if (initial !== "queued" && initial !== "running") return;
    const field = (name) => document.querySelector('[data-live="' + name + '"]');
    async function tick() {
      try {
        const response = await fetchOk(url, "application/json");
        if (response) {
          const live = await response.json();
          const finished = live.status !== "queued" && live.status !== "running";
          if (finished || live.cancel_requested !== initialCancel) {
            window.location.reload(); // a final state has new sections (results, error)
            return;
          }
          const badge = head.querySelector(".badge");
          if (badge && badge.getAttribute("data-status") !== live.status) {
            badge.setAttribute("data-status", live.status);
            badge.className = "badge s-" + live.status;
            badge.querySelector("[aria-hidden]").textContent = live.icon;
            badge.lastChild.textContent = " " + live.status;
          }
          for (const name of ["stage", "layer", "epoch", "eta", "message", "elapsed", "attempts", "started"]) {
            const el = field(name);
            if (el && el.textContent !== String(live[name])) el.textContent = String(live[name]);
          }
          const bar = field("bar");
          const pct = field("percent");
          if (live.percent !== null && live.percent !== undefined) {
            if (bar) bar.value = live.percent;
            if (pct) pct.textContent = live.percent + " %";
          }
        }
      } catch (err) {
        const msg = field("message");
        if (msg) msg.textContent = "Connection lost; retrying.";
      }
      later(tick, ACTIVE_MS);
    }
    later(tick, ACTIVE_MS);
  }

  function autosubmit(form) {
    for (const select of form.querySelectorAll("select")) {
      select.addEventListener("change", function () { form.requestSubmit(); });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const rows = document.querySelector("[data-live-rows]");
    if (rows) liveRows(rows);
    const head = document.querySelector("[data-live-job]");
    if (head) liveJob(head);
    const filters = document.querySelector("form[data-autosubmit]");
    if (filters) autosubmit(filters);
  });
})();
