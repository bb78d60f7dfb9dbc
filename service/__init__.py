"""Stock reservation service: gRPC front (Python), reservation engine (Rust, service._core),
write-through persistence to PostgreSQL, cache invalidation in Redis."""
