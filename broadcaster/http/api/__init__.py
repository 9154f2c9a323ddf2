"""The FastAPI lane: publish, history, /topics, /metrics, health, docs, the archive's and the dashboard's routes."""
