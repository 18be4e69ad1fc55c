"""The app glue: the `@middleware` decorator and `MiddlewareMixin`, `install` and its error layer,
`add_middleware` on routers and routes, and `describe`, which reads the stack back."""
