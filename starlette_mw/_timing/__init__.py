"""Server-Timing: `TimingMiddleware`, and `timing` / `record_timing` / `Timer`, which record metrics
for the current request."""
