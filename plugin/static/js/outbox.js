/* Outbox: mail kept locally (dev mode, or no SMTP_URL), newest first. HTML parts are shown in a
   sandboxed frame, text parts as text. */
"use strict";

(() => {
  const { api, el, badge, dateTime, fail } = window.Amends;
  let cursor = null;

  function item(mail) {
    const frame = el("iframe", { class: "message__frame", title: `Email: ${mail.subject}`, sandbox: "", referrerpolicy: "no-referrer" });
    if (mail.html_body) frame.srcdoc = mail.html_body;
    const body = el("div", { class: "message__body" },
      el("dl", { class: "facts" },
        el("dt", {}, "From"), el("dd", {}, mail.mail_from),
        el("dt", {}, "To"), el("dd", {}, mail.to_address),
        mail.reply_to ? [el("dt", {}, "Reply-To"), el("dd", {}, mail.reply_to)] : null,
        el("dt", {}, "Message-ID"), el("dd", {}, mail.message_id)),
      mail.html_body ? frame : null,
      el("details", { open: !mail.html_body }, el("summary", {}, "Plain-text part"), el("pre", { class: "message__text" }, mail.text_body)));
    return el("li", {}, el("details", { class: "message" },
      el("summary", {}, el("h3", {}, mail.subject), badge(`to ${mail.to_address}`), el("span", { class: "subdued" }, dateTime(mail.created_at))),
      body));
  }

  async function load() {
    const list = document.getElementById("mail-list");
    list.setAttribute("aria-busy", "true");
    try {
      const query = new URLSearchParams({ limit: "25" });
      if (cursor) query.set("cursor", cursor);
      const data = await api("GET", `/outbox?${query}`);
      if (data.transport === "smtp") {
        document.getElementById("outbox-note").textContent = data.test_mode
          ? "Mail leaves through your SMTP server. In test mode, customer emails go to your test address, or are kept here when you have not set one."
          : "Mail leaves through your SMTP server. Emails kept here earlier (in test mode) are listed below.";
      }
      list.append(...data.items.map(item));
      cursor = data.next_cursor;
      document.getElementById("more").hidden = !cursor;
      document.getElementById("empty").hidden = list.children.length > 0;
    } catch (error) {
      fail(error);
    } finally {
      list.removeAttribute("aria-busy");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("more").addEventListener("click", load);
    load();
  });
})();
