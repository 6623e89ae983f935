/* Settings: the shop-wide form and one form per incident kind, with a live preview of its emails.
   The server validates; its 422 names each field (e.g. "late_delivery.value"), shown next to it. */
"use strict";

(() => {
  const { api, el, clear, fail, toast, showFieldErrors, clearFieldErrors, ApiError } = window.Amends;
  const TEMPLATE_FIELDS = ["apology_subject", "apology_text", "apology_html", "fixed_subject", "fixed_text", "fixed_html"];
  const OPTIONAL_TEXT = ["test_address", "staff_address", "minimum_order"];

  const form = document.getElementById("settings-form");
  const section = form.dataset.section; // "shop" or a kind
  const isKind = section !== "shop";
  let defaults = {};
  let previewMessage = "apology";
  let previewTimer = null;
  let previewSeq = 0;

  function controls() {
    return [...form.elements].filter((c) => c.name);
  }

  function readValue(control) {
    if (control.type === "checkbox") return control.checked;
    const raw = control.value;
    if (control.type === "number") {
      if (raw.trim() === "") return OPTIONAL_TEXT.includes(control.name) ? null : "";
      // Amounts keep their digits as text (no float rounding); whole numbers go as numbers.
      return control.getAttribute("inputmode") === "decimal" ? raw.trim() : Number(raw);
    }
    if (TEMPLATE_FIELDS.includes(control.name)) {
      return raw === (defaults[control.name] || "") ? null : raw;
    }
    if (OPTIONAL_TEXT.includes(control.name) && raw.trim() === "") return null;
    return raw;
  }

  function values() {
    const result = {};
    for (const control of controls()) {
      if (control.dataset.root === undefined) result[control.name] = readValue(control);
    }
    return result;
  }

  function fill(data) {
    const current = data.settings[section];
    defaults = isKind ? (data.default_templates[section] || {}) : {};
    for (const control of controls()) {
      const value = control.dataset.root !== undefined ? data[control.name] : current[control.name];
      if (control.type === "checkbox") control.checked = Boolean(value);
      else if (TEMPLATE_FIELDS.includes(control.name)) control.value = value ?? (defaults[control.name] || "");
      else control.value = value ?? "";
    }
    if (isKind) {
      updateValueField();
      const list = clear(document.getElementById("variables"));
      for (const [name, meaning] of Object.entries(data.variables || {})) {
        list.append(el("dt", {}, el("code", {}, name)), el("dd", {}, meaning));
      }
    }
    form.removeAttribute("aria-busy");
    form.inert = false; // typing before the saved values arrive would be overwritten
  }

  function updateValueField() {
    const compensation = form.elements.compensation.value;
    const suffix = document.getElementById("suffix-value");
    if (suffix) suffix.textContent = compensation === "percentage" ? "%" : compensation === "fixed_amount" ? "in your currency" : "";
    const noValue = compensation === "free_shipping" || compensation === "none";
    form.elements.value.disabled = noValue;
  }

  function showErrors(error) {
    const problem = document.getElementById("form-error");
    const unplaced = showFieldErrors(form, error.fields, section);
    problem.textContent = unplaced.length ? `${error.message} ${unplaced.join("; ")}` : error.message;
    problem.hidden = false;
  }

  async function save(event) {
    event.preventDefault();
    clearFieldErrors(form);
    document.getElementById("form-error").hidden = true;
    const button = document.getElementById("save");
    button.disabled = true;
    const body = { [section]: values() };
    if (form.elements.test_mode) body.test_mode = form.elements.test_mode.checked;
    try {
      fill(await api("PUT", "/settings", body));
      toast("Settings saved.");
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) showErrors(error);
      else fail(error);
    } finally {
      button.disabled = false;
    }
  }

  /* --- live preview (kind pages) --- */

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(preview, 250);
  }

  async function preview() {
    const seq = ++previewSeq;
    const problem = document.getElementById("preview-error");
    try {
      const data = await api("POST", "/settings/preview", { kind: section, message: previewMessage, changes: values() });
      if (seq !== previewSeq) return; // an older answer arriving late
      problem.hidden = true;
      for (const name of TEMPLATE_FIELDS) {
        const control = form.elements[name];
        if (control.getAttribute("aria-invalid") === "true") {
          control.removeAttribute("aria-invalid");
          const slot = document.getElementById(`err-${name}`);
          slot.hidden = true;
        }
      }
      document.getElementById("preview-subject").textContent = data.subject;
      document.getElementById("preview-html").srcdoc = data.html; // sandboxed frame
      document.getElementById("preview-text").textContent = data.text;
    } catch (error) {
      if (seq !== previewSeq) return;
      if (error instanceof ApiError && error.status === 422) {
        problem.textContent = Object.entries(error.fields).map(([f, m]) => `${f.split(".").pop()}: ${m}`).join("; ")
          || error.message;
        problem.hidden = false;
      } else {
        fail(error);
      }
    }
  }

  async function load() {
    try {
      fill(await api("GET", "/settings"));
      if (isKind) preview();
    } catch (error) {
      fail(error);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    form.addEventListener("submit", save);
    if (isKind) {
      form.addEventListener("input", schedulePreview);
      form.addEventListener("change", schedulePreview);
      form.elements.compensation.addEventListener("change", updateValueField);
      document.getElementById("reset-templates").addEventListener("click", () => {
        for (const name of TEMPLATE_FIELDS) form.elements[name].value = defaults[name] || "";
        schedulePreview();
        toast("Default templates restored. Save to keep them.");
      });
      for (const button of document.querySelectorAll("[data-message]")) {
        button.addEventListener("click", () => {
          previewMessage = button.dataset.message;
          for (const other of document.querySelectorAll("[data-message]")) {
            other.setAttribute("aria-pressed", String(other === button));
          }
          preview();
        });
      }
    }
    load();
  });
})();
