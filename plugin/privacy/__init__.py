"""Customer privacy: what Amends holds about a customer (export), erasing it (redact), and
erasing a whole shop. Driven by the compliance webhooks in `actions.compliance`."""
