"""Install (OAuth, token exchange) and authentication (session tokens) for the admin."""
