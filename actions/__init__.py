"""Background jobs: each takes ids, loads fresh state, calls plugin services, finishes or raises."""
