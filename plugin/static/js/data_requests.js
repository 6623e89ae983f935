/* Data requests: the exports customers/data_request produced, downloaded with the session token. */
"use strict";

(() => {
  const { api, download, el, clear, timeElement, fail, toast } = window.Amends;

  function row(item) {
    const button = el("button", { type: "button", class: "button" }, "Download");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await download(`/data-exports/${item.id}`, `amends-data-request-${item.id}.json`);
        toast("Export downloaded.");
      } catch (error) {
        fail(error);
      } finally {
        button.disabled = false;
      }
    });
    const customer = item.customer_email || (item.customer_id ? `Customer ${item.customer_id}` : "Unknown customer");
    return el("tr", {},
      el("td", { "data-label": "Requested" }, timeElement(item.requested_at)),
      el("td", { "data-label": "Customer" }, customer),
      el("td", { "data-label": "Request" }, item.data_request_id || "–"),
      el("td", {}, button));
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const table = document.getElementById("exports");
    try {
      const data = await api("GET", "/data-exports");
      clear(table.querySelector("tbody")).append(...data.items.map(row));
      document.getElementById("empty").hidden = data.items.length > 0;
    } catch (error) {
      fail(error);
    } finally {
      table.removeAttribute("aria-busy");
    }
  });
})();
