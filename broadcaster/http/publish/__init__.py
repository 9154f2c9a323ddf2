"""The publish lane's bodies: one event, streamed NDJSON or text, multipart uploads."""
