"""Redirects: `RedirectMiddleware` and its rules (`Redirect`, `load_redirects`), the index and table
that decide a request, and the check for loops and chains at construction."""
