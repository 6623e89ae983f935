/* The task board: overdue, open and done columns; edit assignee, due time and notes; close. */
"use strict";

(() => {
  const { api, el, clear, kindLabel, badge, href, dateTime, relative, fail, toast, showFieldErrors, clearFieldErrors, ApiError } = window.Amends;
  const columns = {};
  let formCounter = 0;

  /* <input type="datetime-local"> speaks local time without a zone; the API wants one. */
  function toLocalInput(value) {
    if (!value) return "";
    const date = new Date(value);
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  function fromLocalInput(value) {
    return value ? new Date(value).toISOString() : null;
  }

  function editForm(task, card) {
    const n = ++formCounter;
    const field = (name, label, control) => {
      control.setAttribute("aria-describedby", `t${n}-err-${name}`);
      return el("div", { class: "field" },
        el("label", { for: `t${n}-${name}` }, label), control,
        el("p", { class: "field-error", id: `t${n}-err-${name}`, dataset: { errorFor: name }, hidden: true }));
    };
    const form = el("form", { class: "task-form", novalidate: true, hidden: true },
      field("assignee", "Assignee", el("input", { id: `t${n}-assignee`, name: "assignee", type: "text", maxlength: 255, value: task.assignee || "", autocomplete: "off" })),
      field("due_at", "Due", el("input", { id: `t${n}-due_at`, name: "due_at", type: "datetime-local", value: toLocalInput(task.due_at) })),
      field("notes", "Notes", el("textarea", { id: `t${n}-notes`, name: "notes", rows: 3, maxlength: 10000 })),
      el("div", { class: "task__actions" },
        el("button", { type: "submit", class: "button button--primary" }, "Save"),
        el("button", { type: "button", class: "button", onclick: () => { form.hidden = true; } }, "Cancel")));
    form.elements.notes.value = task.notes || "";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      try {
        const updated = await api("PATCH", `/tasks/${task.id}`, {
          assignee: form.elements.assignee.value.trim() || null,
          notes: form.elements.notes.value || null,
          due_at: fromLocalInput(form.elements.due_at.value),
        });
        toast("Task saved.");
        card.replaceWith(taskCard(updated));
      } catch (error) {
        if (error instanceof ApiError && error.status === 422) showFieldErrors(form, error.fields);
        else fail(error);
      }
    });
    return form;
  }

  function taskCard(task) {
    const incident = task.incident;
    const order = incident.order_name || `Order ${incident.order_id}`;
    const card = el("li", { class: "task", dataset: { taskId: task.id } });
    const status = task.status === "done" ? badge("Done", "done") : task.overdue ? badge("Overdue", "overdue") : badge("Open", "open");
    const list = el("dl", { class: "facts" });
    const pairs = [
      ["Order", el("a", { href: href(`/incidents/${incident.id}`), "data-nav": true }, order)],
      ["Kind", kindLabel(incident.kind)],
      ["Customer", [incident.customer_first_name, incident.customer_email].filter(Boolean).join(" · ") || "Unknown"],
      ["Due", task.due_at ? `${dateTime(task.due_at)} (${relative(task.due_at)})` : "No due time"],
      ["Assignee", task.assignee || "Unassigned"],
    ];
    if (task.notes) pairs.push(["Notes", task.notes]);
    if (task.closed_at) pairs.push(["Closed", dateTime(task.closed_at)]);
    for (const [label, value] of pairs) list.append(el("dt", {}, label), el("dd", {}, value));
    card.append(el("h3", {}, task.title), el("p", { class: "badges" }, status), list);
    if (task.status !== "done") {
      const form = editForm(task, card);
      const edit = el("button", { type: "button", class: "button", "aria-expanded": "false" }, "Edit");
      edit.addEventListener("click", () => {
        form.hidden = !form.hidden;
        edit.setAttribute("aria-expanded", String(!form.hidden));
        if (!form.hidden) form.elements.assignee.focus();
      });
      const close = el("button", { type: "button", class: "button button--primary" }, "Close task");
      close.addEventListener("click", () => closeTask(task, close));
      card.append(el("div", { class: "task__actions" }, close, edit), form);
    }
    return card;
  }

  async function closeTask(task, button) {
    button.disabled = true;
    try {
      await api("POST", `/tasks/${task.id}/resolve`);
      toast("Task closed. The incident is resolved and the customer will be told it is fixed.");
      await Promise.all(Object.keys(columns).map((status) => loadColumn(status, true)));
    } catch (error) {
      button.disabled = false;
      fail(error);
    }
  }

  async function loadColumn(status, reset) {
    const column = columns[status];
    if (reset) {
      column.cursor = null;
      column.count = 0;
      clear(column.list);
    }
    column.list.setAttribute("aria-busy", "true");
    try {
      const query = new URLSearchParams({ status, limit: "25" });
      if (column.cursor) query.set("cursor", column.cursor);
      const data = await api("GET", `/tasks?${query}`);
      column.list.append(...data.items.map(taskCard));
      column.cursor = data.next_cursor;
      column.count += data.items.length;
      column.more.hidden = !data.next_cursor;
      column.empty.hidden = column.count > 0;
      column.counter.textContent = data.next_cursor ? `(${column.count}+)` : `(${column.count})`;
    } catch (error) {
      fail(error);
    } finally {
      column.list.removeAttribute("aria-busy");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const section of document.querySelectorAll("[data-status]")) {
      const status = section.dataset.status;
      columns[status] = {
        list: section.querySelector("[data-list]"),
        empty: section.querySelector("[data-empty]"),
        more: section.querySelector("[data-more]"),
        counter: section.querySelector("[data-count]"),
        cursor: null,
        count: 0,
      };
      columns[status].more.addEventListener("click", () => loadColumn(status, false));
      loadColumn(status, true);
    }
  });
})();
