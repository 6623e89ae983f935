import pytest
from sqlalchemy import select

from plugin.errors import MailPermanentError, MailRetryableError
from plugin.mailer import Email, OutboxTransport, SmtpTransport, make_transport
from plugin.models import OutboxEmail


def email(**overrides) -> Email:
    fields = dict(
        to="jane@example.test",
        subject="Sorry about order #1001",
        text="Hello Jane, plain text.",
        html="<p>Hello <b>Jane</b></p>",
        mail_from="Calm Coffee <amends@example.test>",
        reply_to="hello@calm-coffee.example",
        message_id="<incident-1-apology@amends.example.test>",
    )
    fields.update(overrides)
    return Email(**fields)


def test_smtp_delivers_text_and_html(smtp_server):
    SmtpTransport(smtp_server.url).send(email())
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "jane@example.test"
    assert message["Reply-To"] == "hello@calm-coffee.example"
    assert message["Message-ID"] == "<incident-1-apology@amends.example.test>"
    assert message.get_body(("plain",)).get_content().strip() == "Hello Jane, plain text."
    assert message.get_body(("html",)).get_content().strip() == "<p>Hello <b>Jane</b></p>"


def test_a_server_without_tls_costs_no_tls_context(smtp_server):
    # Building one loads the CA bundle (~20 ms of CPU): only for servers that speak TLS, once.
    transport = SmtpTransport(smtp_server.url)
    transport.send(email())
    transport.send(email(message_id="<second@amends.test>"))
    assert transport._tls is None
    assert transport.tls is transport.tls


def test_smtp_4xx_is_retryable_then_succeeds(smtp_server):
    smtp_server.fail_next("451 4.3.0 Try again later")
    transport = SmtpTransport(smtp_server.url)
    with pytest.raises(MailRetryableError, match="451"):
        transport.send(email())
    transport.send(email())
    assert len(smtp_server.wait_for(1)) == 1


def test_smtp_5xx_is_permanent(smtp_server):
    smtp_server.fail_next("554 5.7.1 Rejected")
    with pytest.raises(MailPermanentError, match="554"):
        SmtpTransport(smtp_server.url).send(email())


def test_smtp_connection_refused_is_retryable():
    with pytest.raises(MailRetryableError, match="connection failed"):
        SmtpTransport("smtp://127.0.0.1:1", timeout=2).send(email())


def test_smtp_url_parts():
    transport = SmtpTransport("smtps://us%40er:p%3Ass@mail.example.com")
    assert (transport.host, transport.port, transport.implicit_tls) == ("mail.example.com", 465, True)
    assert (transport.username, transport.password) == ("us@er", "p:ss")
    assert SmtpTransport("smtp://mail.example.com").port == 587


def test_without_smtp_url_mail_lands_in_the_outbox(services):
    transport = make_transport(None, services.db)
    assert isinstance(transport, OutboxTransport)
    transport.send(email())
    transport.send(email())  # the same Message-ID again is the same message
    with services.db.session() as session:
        rows = session.scalars(select(OutboxEmail)).all()
    assert [(r.to_address, r.subject) for r in rows] == [("jane@example.test", "Sorry about order #1001")]
    assert rows[0].html_body == "<p>Hello <b>Jane</b></p>"
