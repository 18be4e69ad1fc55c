"""CORS: `CORSMiddleware` on top of Starlette's, its `CORSPolicy` presets, and the checks that
decide what an `allow_origin_regex` can match."""
