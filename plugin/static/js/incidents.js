/* Incidents: filters and search in the URL (so Back and bookmarks work), a cursor per page. */
"use strict";

(() => {
  const { api, el, clear, kindLabel, stateLabel, badge, href, timeElement, fail, ApiError } = window.Amends;
  const FILTERS = ["q", "kind", "state", "since", "until"];

  function currentQuery() {
    const params = new URLSearchParams(window.location.search);
    const query = new URLSearchParams();
    for (const name of [...FILTERS, "cursor"]) {
      const value = params.get(name);
      if (value) query.set(name, value);
    }
    return query;
  }

  function fillForm(form, query) {
    for (const name of FILTERS) form.elements[name].value = query.get(name) || "";
  }

  function row(incident) {
    const link = el("a", { href: href(`/incidents/${incident.id}`), "data-nav": true },
      incident.order_name || `Order ${incident.order_id}`);
    const state = [badge(stateLabel(incident.state), incident.state)];
    if (incident.needs_attention) state.push(" ", badge("Needs attention", "attention"));
    const customer = [incident.customer_first_name, incident.customer_email].filter(Boolean).join(" · ") || "Unknown";
    return el("tr", {},
      el("td", { "data-label": "Order" }, link),
      el("td", { "data-label": "Kind" }, kindLabel(incident.kind)),
      el("td", { "data-label": "State" }, state),
      el("td", { "data-label": "Customer" }, customer),
      el("td", { "data-label": "Opened" }, timeElement(incident.opened_at)));
  }

  function pageLink(id, query) {
    const link = document.getElementById(id);
    if (!query) {
      link.hidden = true;
      return;
    }
    link.hidden = false;
    const search = query.toString();
    link.setAttribute("href", href(`/incidents${search ? `?${search}` : ""}`));
  }

  async function load() {
    const query = currentQuery();
    const form = document.getElementById("filters");
    fillForm(form, query);
    const table = document.getElementById("incidents-table");
    const body = clear(table.querySelector("tbody"));
    const problem = document.getElementById("filter-error");
    problem.hidden = true;
    table.setAttribute("aria-busy", "true");
    try {
      const data = await api("GET", `/incidents?${query.toString()}`);
      body.append(...data.items.map(row));
      document.getElementById("empty").hidden = data.items.length > 0;
      const next = new URLSearchParams(query);
      next.set("cursor", data.next_cursor || "");
      pageLink("next-page", data.next_cursor ? next : null);
      const first = new URLSearchParams(query);
      first.delete("cursor");
      pageLink("first-page", query.has("cursor") ? first : null);
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        problem.textContent = Object.entries(error.fields).map(([f, m]) => `${f}: ${m}`).join("; ") || error.message;
        problem.hidden = false;
      } else {
        fail(error);
      }
    } finally {
      table.removeAttribute("aria-busy");
    }
  }

  function navigate(query) {
    const search = query.toString();
    window.history.pushState(null, "", href(`/incidents${search ? `?${search}` : ""}`));
    load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("filters");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      for (const name of FILTERS) {
        const value = form.elements[name].value.trim();
        if (value) query.set(name, value);
      }
      navigate(query);
    });
    form.addEventListener("reset", () => setTimeout(() => navigate(new URLSearchParams()), 0));
    for (const name of ["kind", "state"]) {
      form.elements[name].addEventListener("change", () => form.requestSubmit());
    }
    for (const id of ["next-page", "first-page"]) {
      document.getElementById(id).addEventListener("click", (event) => {
        event.preventDefault();
        window.history.pushState(null, "", event.currentTarget.getAttribute("href"));
        load();
        document.getElementById("main").focus();
      });
    }
    window.addEventListener("popstate", load);
    load();
  });
})();
