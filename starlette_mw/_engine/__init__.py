"""The engine behind `HTTPMiddleware`: the exchange between a dispatch function and the app, the
app's task (started eagerly where the loop allows), and `PlainMiddleware`, the base of the
package's own middlewares."""
