/* Amends admin: what every page shares. Plain JavaScript, no build step.

   Every API call carries App Bridge's session token when App Bridge is there
   (`shopify.idToken()`); without it (dev mode, or a network that blocks Shopify's CDN) the call
   goes without one and the API decides. Text from the API is only ever put in the page as text
   (textContent, attributes): never as HTML. */
"use strict";

window.Amends = (() => {
  const KIND_LABELS = { late_delivery: "Late delivery", return: "Return", refund: "Refund" };
  const STATE_LABELS = {
    detected: "Detected", apologised: "Apologised", resolved: "Resolved", customer_told: "Customer told",
  };

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `The request failed (${status}).`);
      this.status = status;
      this.body = body || {};
      this.fields = (body && body.fields) || {};
    }
  }

  async function sessionToken() {
    const bridge = window.shopify;
    if (bridge && typeof bridge.idToken === "function") {
      try {
        return await bridge.idToken();
      } catch (error) {
        return null;
      }
    }
    return null;
  }

  async function request(method, path, body, retried) {
    const headers = { Accept: "application/json" };
    const token = await sessionToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const options = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(`/api${path}`, options);
    if (response.status === 401 && token && !retried
        && response.headers.get("X-Shopify-Retry-Invalid-Session-Request")) {
      return request(method, path, body, true); // a fresh token, once
    }
    return response;
  }

  async function api(method, path, body) {
    let response;
    try {
      response = await request(method, path, body, false);
    } catch (error) {
      const failure = new ApiError(0, { message: "Amends could not be reached. Check your connection and try again." });
      notice(failure.message, "critical");
      throw failure;
    }
    let data = null;
    if ((response.headers.get("Content-Type") || "").includes("application/json")) {
      data = await response.json().catch(() => null);
    }
    if (response.status === 401) {
      showSignedOut(data);
      throw new ApiError(401, data);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  async function download(path, fallbackName) {
    const response = await request("GET", path, undefined, false);
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new ApiError(response.status, data);
    }
    const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: match ? match[1] : fallbackName });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function showSignedOut(data) {
    const dev = document.body.dataset.devMode === "true";
    const reason = (data && data.message) || "";
    const message = dev
      ? `The demo shop is not set up (${reason}). Start Amends with \`amends dev\`, which creates it.`
      : "Open Amends from your Shopify admin (Apps › Amends) to sign in.";
    notice(message, "critical", "signed-out");
  }

  /* el("a", {href: "/x", class: "button"}, "text", otherNode): text children become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function notice(message, tone, key) {
    const area = document.getElementById("alerts");
    if (!area) return;
    if (key) {
      const existing = area.querySelector(`[data-key="${key}"]`);
      if (existing) existing.remove();
    }
    area.append(el("div", { class: `banner banner--${tone || "info"}`, role: "alert", dataset: { key: key || "" } },
      el("p", {}, message)));
  }

  let toastTimer = null;
  function toast(message, tone) {
    const node = document.getElementById("toast");
    if (!node) return;
    node.textContent = message;
    node.className = tone === "critical" ? "toast toast--error" : "toast";
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 4000);
  }

  function dateTime(value) {
    if (!value) return "";
    const date = new Date(value);
    return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function timeElement(value) {
    return el("time", { datetime: value }, dateTime(value));
  }

  function relative(value) {
    if (!value) return "";
    const minutes = Math.round((new Date(value) - Date.now()) / 60000);
    const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
    if (Math.abs(minutes) < 60) return format.format(minutes, "minute");
    const hours = Math.round(minutes / 60);
    if (Math.abs(hours) < 48) return format.format(hours, "hour");
    return format.format(Math.round(hours / 24), "day");
  }

  function kindLabel(kind) { return KIND_LABELS[kind] || kind; }
  function stateLabel(state) { return STATE_LABELS[state] || state; }

  function badge(text, tone) {
    return el("span", { class: `badge${tone ? ` badge--${tone}` : ""}` }, text);
  }

  /* Inside the Shopify admin, internal links keep the shop/host parameters App Bridge reads. */
  const KEPT_PARAMS = ["shop", "host", "embedded", "locale"];
  function href(path) {
    const current = new URLSearchParams(window.location.search);
    const url = new URL(path, window.location.origin);
    for (const name of KEPT_PARAMS) {
      if (current.has(name) && !url.searchParams.has(name)) url.searchParams.set(name, current.get(name));
    }
    return url.pathname + url.search;
  }

  function keepParams(root) {
    for (const link of (root || document).querySelectorAll("a[data-nav]")) {
      const target = link.getAttribute("href");
      if (target && target.startsWith("/")) link.setAttribute("href", href(target));
    }
  }

  /* Field errors from a 422: `fields` maps "late_delivery.value" (or "value") to a message. */
  function showFieldErrors(form, fields, prefix) {
    clearFieldErrors(form);
    const unplaced = [];
    for (const [path, message] of Object.entries(fields || {})) {
      const name = prefix && path.startsWith(`${prefix}.`) ? path.slice(prefix.length + 1) : path;
      const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
      const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`)
        || form.querySelector(`#err-${CSS.escape(name)}`);
      if (input && slot) {
        input.setAttribute("aria-invalid", "true");
        slot.textContent = message;
        slot.hidden = false;
      } else {
        unplaced.push(`${path}: ${message}`);
      }
    }
    const first = form.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
    return unplaced;
  }

  function clearFieldErrors(form) {
    for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute("aria-invalid");
    for (const slot of form.querySelectorAll(".field-error")) {
      slot.textContent = "";
      slot.hidden = true;
    }
  }

  function fail(error) {
    if (error instanceof ApiError && error.status === 401) return; // already explained
    notice(error.message || String(error), "critical");
  }

  document.addEventListener("DOMContentLoaded", () => keepParams(document));

  return {
    ApiError, api, download, el, append, clear, notice, toast, dateTime, timeElement, relative,
    kindLabel, stateLabel, badge, href, keepParams, showFieldErrors, clearFieldErrors, fail,
    KIND_LABELS,
  };
})();
