"""Test support: real servers (Redis, uvicorn, broadcaster processes) and deadline helpers."""
