/* Overview: this week's incidents, tasks, codes, what needs attention, and the test-mode switch. */
"use strict";

(() => {
  const { api, el, clear, kindLabel, fail, toast } = window.Amends;
  const KINDS = ["late_delivery", "return", "refund"];
  const STATES = ["detected", "apologised", "resolved", "customer_told"];
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  function money(list) {
    if (!list.length) return "0";
    return list.map(({ currency, amount }) => {
      try {
        return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(Number(amount));
      } catch (error) {
        return `${amount} ${currency}`;
      }
    }).join(" · ");
  }

  /* Stacked bars per day: a trend at a glance. The same figures are in a table for screen readers. */
  function chart(days) {
    const width = 560;
    const height = 160;
    const top = 10;
    const bottom = 22;
    const max = Math.max(1, ...days.map((d) => KINDS.reduce((sum, k) => sum + d[k], 0)));
    const slot = width / days.length;
    const bar = Math.max(4, slot * 0.6);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title" },
      svg("title", { id: "chart-title" }, "Incidents per day over the last 14 days, by kind"));
    days.forEach((day, index) => {
      let y = height - bottom;
      const x = index * slot + (slot - bar) / 2;
      for (const kind of KINDS) {
        const h = (day[kind] / max) * (height - top - bottom);
        if (h > 0) {
          y -= h;
          root.append(svg("rect", { x, y, width: bar, height: h, rx: 2, fill: `var(--kind-${kind})` },
            svg("title", {}, `${day.day}: ${day[kind]} ${kindLabel(kind).toLowerCase()}`)));
        }
      }
      if (index % 2 === 0 || days.length <= 7) {
        const label = new Date(`${day.day}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
        root.append(svg("text", { x: x + bar / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, label));
      }
    });
    root.append(svg("line", { x1: 0, x2: width, y1: height - bottom, y2: height - bottom, stroke: "#e3e3e3" }));

    const table = el("table", { class: "visually-hidden" },
      el("caption", {}, "Incidents per day"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Day"), KINDS.map((k) => el("th", { scope: "col" }, kindLabel(k))))),
      el("tbody", {}, days.map((d) => el("tr", {}, el("th", { scope: "row" }, d.day), KINDS.map((k) => el("td", {}, d[k]))))));
    return [root, table];
  }

  function render(data) {
    document.getElementById("shop-name").textContent = data.shop.name || data.shop.domain;
    if (data.shop.reauth_reason) {
      window.Amends.notice(
        `Amends has lost access to your store (${data.shop.reauth_reason}). Open Amends from Apps in your Shopify admin to reconnect it.`,
        "critical", "reauth");
    }
    const banner = document.getElementById("test-mode-banner");
    banner.hidden = !data.shop.test_mode;
    document.getElementById("test-mode-toggle").checked = data.shop.test_mode;

    const attention = document.getElementById("attention-banner");
    attention.hidden = data.needs_attention === 0;
    document.getElementById("attention-count").textContent =
      data.needs_attention === 1 ? "1 incident needs" : `${data.needs_attention} incidents need`;

    document.getElementById("stat-incidents").textContent = data.incidents_total;
    document.getElementById("stat-incidents-detail").textContent = KINDS
      .map((kind) => `${Object.values(data.incidents[kind] || {}).reduce((a, b) => a + b, 0)} ${kindLabel(kind).toLowerCase()}`)
      .join(" · ");
    document.getElementById("stat-open-tasks").textContent = data.open_tasks;
    document.getElementById("stat-overdue-tasks").textContent = data.overdue_tasks;
    document.getElementById("stat-codes").textContent = data.codes_sent;
    document.getElementById("stat-redeemed").textContent = data.codes_redeemed;
    document.getElementById("stat-revenue").textContent = money(data.redeemed_revenue);

    const body = clear(document.querySelector("#by-kind tbody"));
    for (const kind of KINDS) {
      const states = data.incidents[kind] || {};
      body.append(el("tr", {}, el("th", { scope: "row" }, kindLabel(kind)),
        STATES.map((state) => el("td", { class: "num" }, states[state] || 0))));
    }
    clear(document.getElementById("chart")).append(...chart(data.daily));
    document.getElementById("stats").removeAttribute("aria-busy");
  }

  async function load() {
    try {
      render(await api("GET", "/overview"));
    } catch (error) {
      fail(error);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const toggle = document.getElementById("test-mode-toggle");
    toggle.addEventListener("change", async () => {
      const on = toggle.checked;
      if (!on && !window.confirm("Turn test mode off? Apologies and codes will then reach real customers.")) {
        toggle.checked = true;
        return;
      }
      toggle.disabled = true;
      try {
        await api("PUT", "/settings", { test_mode: on });
        toast(on ? "Test mode is on." : "Test mode is off: Amends now reaches customers.");
        await load();
      } catch (error) {
        toggle.checked = !on;
        fail(error);
      } finally {
        toggle.disabled = false;
      }
    });
    load();
  });
})();
