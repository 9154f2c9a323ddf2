"""The stream lane: parsing a stream request, the stream's writer loop, SSE and NDJSON framing."""
