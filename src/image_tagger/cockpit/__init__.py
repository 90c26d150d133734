"""The Admin Cockpit: a static page at /admin that talks to the admin API."""
