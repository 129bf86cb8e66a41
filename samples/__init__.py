"""Samples: a client, a middle-tier API and a downstream API, runnable offline."""
