"""DynamoDB and the outbox: records, the client helpers, the writer and its process, reads and
rollups."""
