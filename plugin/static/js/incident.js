/* One incident: its whole story. Emails as sent are shown in a sandboxed frame (no scripts, no
   same-origin access), their text part as text. */
"use strict";

(() => {
  const { api, el, clear, kindLabel, stateLabel, badge, href, timeElement, dateTime, relative, fail, toast } = window.Amends;
  const root = document.getElementById("incident");
  const incidentId = root.dataset.incidentId;

  function facts(node, pairs) {
    clear(node);
    for (const [label, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      node.append(el("dt", {}, label), el("dd", {}, value));
    }
    if (!node.children.length) node.append(el("dd", { class: "subdued" }, "Nothing recorded."));
  }

  function sandboxed(html, title, className) {
    const frame = el("iframe", { class: className, title, sandbox: "", referrerpolicy: "no-referrer" });
    frame.srcdoc = html; // a property, not markup: the frame's sandbox keeps scripts and forms off
    return frame;
  }

  function message(item) {
    const tone = item.state === "sent" ? "done" : item.state === "failed" ? "failed" : null;
    const summary = el("summary", {},
      el("h3", {}, item.subject || "(no subject)"),
      badge(item.kind === "apology" ? "Apology" : item.kind === "fixed" ? "It's fixed" : item.kind),
      badge(item.state, tone),
      item.test ? badge("Test", "test") : null);
    const body = el("div", { class: "message__body" });
    const lines = [
      ["To", item.to_address],
      ["Meant for", item.redirected_from],
      ["Sent", item.sent_at ? dateTime(item.sent_at) : null],
      ["Attempts", item.attempts],
      ["Error", item.error],
    ];
    const list = el("dl", { class: "facts" });
    facts(list, lines);
    body.append(list);
    if (item.html_body) body.append(sandboxed(item.html_body, `Email: ${item.subject || ""}`, "message__frame"));
    if (item.text_body) body.append(el("details", {}, el("summary", {}, "Plain-text part"), el("pre", { class: "message__text" }, item.text_body)));
    return el("details", { class: "message", open: true }, summary, body);
  }

  function render(data) {
    document.title = `${data.order_name || "Incident"} · Amends`;
    document.getElementById("incident-title").textContent =
      `${data.order_name || `Order ${data.order_id}`}: ${kindLabel(data.kind).toLowerCase()}`;
    const badges = clear(document.getElementById("incident-badges"));
    badges.append(badge(stateLabel(data.state), data.state));
    if (data.needs_attention) badges.append(badge("Needs attention", "attention"));

    const orderLink = document.getElementById("order-link");
    orderLink.href = data.order_url;
    orderLink.hidden = false;
    document.getElementById("resolve").hidden = !data.is_open;

    document.getElementById("attention").hidden = !data.needs_attention;
    document.getElementById("attention-reason").textContent = data.needs_attention || "";

    const timeline = clear(document.getElementById("timeline"));
    for (const entry of data.timeline) {
      timeline.append(el("li", {},
        el("div", {}, timeElement(entry.at)),
        el("div", {}, entry.summary),
        el("div", { class: "source" }, entry.source)));
    }
    if (!data.timeline.length) timeline.append(el("li", { class: "subdued" }, "No steps yet."));

    const messages = clear(document.getElementById("messages"));
    if (data.messages.length) messages.append(...data.messages.map(message));
    else messages.append(el("p", { class: "empty" }, "No messages yet."));

    facts(document.getElementById("customer"), [
      ["Name", data.customer_first_name],
      ["Email", data.customer_email],
      ["Customer id", data.customer_id],
      ["Withheld by Shopify", data.missing.join(", ")],
    ]);

    const code = clear(document.getElementById("code"));
    if (data.code) {
      const c = data.code;
      const value = c.compensation === "percentage" ? `${Number(c.value)} % off`
        : c.compensation === "fixed_amount" ? `${c.value} ${c.currency || ""} off`
          : c.compensation === "free_shipping" ? "Free shipping" : c.compensation;
      code.append(el("p", { class: "code-value" }, c.code), el("p", { class: "badges" },
        badge(c.redeemed ? "Redeemed" : "Not redeemed", c.redeemed ? "done" : null),
        c.test ? badge("Test code", "test") : null,
        c.state === "failed" ? badge("Failed", "failed") : null));
      const list = el("dl", { class: "facts" });
      facts(list, [
        ["Value", value],
        ["Expires", c.ends_at ? dateTime(c.ends_at) : null],
        ["Used on", c.redeemed_order_name],
        ["Order total", c.redeemed_amount ? `${c.redeemed_amount} ${c.redeemed_currency || ""}` : null],
        ["Error", c.error],
      ]);
      code.append(list);
    } else {
      code.append(el("p", { class: "empty" }, "No code."));
    }

    const task = clear(document.getElementById("task"));
    if (data.task) {
      const t = data.task;
      task.append(el("p", {}, t.title), el("p", { class: "badges" },
        badge(t.status === "done" ? "Done" : t.overdue ? "Overdue" : "Open", t.status === "done" ? "done" : t.overdue ? "overdue" : "open")));
      const list = el("dl", { class: "facts" });
      facts(list, [
        ["Due", t.due_at ? `${dateTime(t.due_at)} (${relative(t.due_at)})` : null],
        ["Assignee", t.assignee],
        ["Notes", t.notes],
        ["Closed", t.closed_at ? dateTime(t.closed_at) : null],
      ]);
      task.append(list, el("a", { href: href("/tasks"), "data-nav": true }, "Task board"));
    } else {
      task.append(el("p", { class: "empty" }, "No task yet."));
    }

    facts(document.getElementById("details"), Object.entries(data.details || {}).map(([key, value]) => [
      key.replace(/_/g, " "), typeof value === "object" && value !== null ? JSON.stringify(value) : String(value),
    ]));
    root.removeAttribute("aria-busy");
  }

  async function load() {
    try {
      render(await api("GET", `/incidents/${incidentId}`));
    } catch (error) {
      if (error.status === 404) {
        document.getElementById("incident-title").textContent = "This incident does not exist in this shop.";
        root.removeAttribute("aria-busy");
        return;
      }
      fail(error);
    }
  }

  async function act(button, path, done) {
    button.disabled = true;
    try {
      const data = await api("POST", path);
      render(data.incident || data);
      toast(done);
    } catch (error) {
      fail(error);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const resolve = document.getElementById("resolve");
    resolve.addEventListener("click", () => {
      if (window.confirm("Resolve this incident? Its task closes and the customer is told it is fixed.")) {
        act(resolve, `/incidents/${incidentId}/resolve`, "Resolved. The customer will be told it is fixed.");
      }
    });
    const retry = document.getElementById("retry");
    retry.addEventListener("click", () => act(retry, `/incidents/${incidentId}/retry`, "Started again."));
    load();
  });
})();
