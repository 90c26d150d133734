"""Who may call the admin API: bearer tokens or a trusted proxy header."""
