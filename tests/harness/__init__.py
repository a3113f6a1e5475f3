"""Real servers for tests, started from session fixtures and stopped by PID."""
